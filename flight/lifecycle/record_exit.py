"""The exit recorder: the supervisor tells the payload's state directory how the payload's
process ended, for the next start to report.

    payload-flight --state-dir DIR --record-exit          (systemd: ExecStopPost=)
    python -m flight.lifecycle.record_exit --state-dir DIR (the same, without loading the payload)

It reads systemd's $SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS (systemd.exec(5)) and records
them only for a run that did not record its own end. It imports nothing heavy, so that it adds
little to a restart.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from flight.durable import open_lock_file
from flight.lifecycle.reset_reason import ServiceExit
from flight.lifecycle.run_record import RunLedger

SERVICE_RESULT = "SERVICE_RESULT"
EXIT_CODE = "EXIT_CODE"
EXIT_STATUS = "EXIT_STATUS"
# The payload's process is gone when the supervisor calls us; what could still hold the state
# directory's lock is a process of it that outlived it, for a moment.
LOCK_WAIT_S = 10.0
LOCK_FILE = ".lock"

EXIT_RECORDED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class RecordError(Exception):
    """The state directory cannot be locked, read or written."""


def _lock(state_dir: Path, wait_s: float) -> int:
    if not state_dir.is_dir():
        raise RecordError(f"state directory {state_dir} does not exist")
    try:
        fd = open_lock_file(state_dir / LOCK_FILE)
    except OSError as exc:
        raise RecordError(f"cannot use state directory {state_dir}: {exc.strerror}") from None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise RecordError(
                    f"state directory {state_dir} is still in use after {wait_s:g} s"
                ) from None
            time.sleep(0.1)


def record(state_dir: Path, environ: Mapping[str, str], wait_s: float = LOCK_WAIT_S) -> str:
    """Record what `environ` says of the last run's end; what was done, in one sentence.
    RecordError when the state directory cannot be used, ValueError without $SERVICE_RESULT."""
    seen = ServiceExit(
        environ.get(SERVICE_RESULT, ""), environ.get(EXIT_CODE, ""), environ.get(EXIT_STATUS, "")
    )
    if not seen.result:
        raise ValueError(f"${SERVICE_RESULT} is not set: the supervisor sets it for ExecStopPost")
    fd = _lock(state_dir, wait_s)
    try:
        ledger = RunLedger(state_dir)
        reason = ledger.record_exit(seen)
    except OSError as exc:
        raise RecordError(f"cannot record in {state_dir}: {exc}") from None
    finally:
        os.close(fd)
    if reason is None:
        kept = ledger.reason or "nothing"
        return f"the run's own record stands ({kept}); the supervisor saw {seen.describe()}"
    return f"recorded {reason.name} ({seen.describe()})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flight.lifecycle.record_exit", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--state-dir", type=Path, default=Path("payload-state"))
    args = parser.parse_args(argv)
    return run(args.state_dir)


def run(state_dir: Path, environ: Mapping[str, str] | None = None) -> int:
    """Record, and say what was done in one line on stderr (the supervisor's log)."""
    try:
        said = record(state_dir, os.environ if environ is None else environ)
    except ValueError as exc:
        print(f"payload-flight: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RecordError as exc:
        print(f"payload-flight: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"payload-flight: exit recorded: {said}", file=sys.stderr)
    return EXIT_RECORDED


if __name__ == "__main__":
    sys.exit(main())
