"""`groundsw` as an operator runs it, for the tests of its offline commands: in a new process
through the package's entry point, or in this one (argparse's exits caught); and the ISO times
it prints read back."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from groundsw.cli import main


def groundsw(*argv: str) -> subprocess.CompletedProcess[str]:
    """`groundsw ARGV` as an operator runs it: a new process through the package's entry point."""
    return subprocess.run(
        [sys.executable, "-m", "groundsw", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`groundsw ARGV` in this process: its exit code, standard output and standard error."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's refusals
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def unix(text: str) -> float:
    """The UNIX time of an ISO 8601 time groundsw printed (with a Z or an offset)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
