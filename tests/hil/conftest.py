"""Every test here runs the real programs through a link: marked `hil`."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.bench import Bench
from tests.hil.station import run_station


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/hil/" in str(item.fspath):
            item.add_marker(pytest.mark.hil)


@pytest.fixture
def station(make_bench: Any, tmp_path: Path) -> Iterator[tuple[Bench, Path, Path]]:
    """A bench and `groundsw serve` on its link: (bench, data directory, socket)."""
    yield from run_station(make_bench, tmp_path)


@pytest.fixture
def spawn() -> Iterator[Callable[[list[str]], subprocess.Popen[str]]]:
    """Start a program for the test (stdout and stderr captured, text); whatever is still
    running at the end of the test, failed or not, is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(argv: list[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _default_sigint() -> None:
    # A suite started in the background without job control (`make test &` in a script) runs
    # with SIGINT ignored, and an ignored signal stays ignored across exec: the programs a test
    # stops with Ctrl-C's signal would never see it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
