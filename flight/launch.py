"""payload-flight's command line: its flags, the state directory's lock, the payload's start
and stop by signal, and the supervisor's exit recorder (which must not load the payload)."""

from __future__ import annotations

import argparse
import faulthandler
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from flight.app import EXIT_USAGE, READ_TIMEOUT_S, Payload
from flight.compute.interpreter import configure_interpreter
from flight.config import ConfigError, load_config
from flight.durable import open_lock_file
from flight.jobs.store import JobStoreError
from flight.lifecycle.record_exit import run as record_exit
from flight.lifecycle.sd_notify import NotifyError
from spacelink.icd import DEFAULT_BAUD
from spacelink.keystore import KeyStoreError
from spacelink.serialport import PortError, open_port
from telemetry_defs.loader import DictionaryError, load_dictionary

log = logging.getLogger("flight")


class StateDirError(Exception):
    """The state directory cannot be created, written or locked."""


def lock_state_dir(path: Path) -> int:
    """Create the state directory and hold an exclusive lock on it for the process's life.

    Two payload processes sharing one state directory would corrupt each other's stores.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = open_lock_file(path / ".lock")
    except OSError as exc:
        where = exc.filename or path
        raise StateDirError(f"cannot use state directory {path}: {where}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateDirError(
            f"state directory {path} is in use by another payload-flight process"
        ) from None
    return fd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="payload-flight",
        description="Payload manager: serves the CCSDS/PUS link on a serial port.",
    )
    parser.add_argument("--port", help="serial device path or pyserial URL (required)")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help="line rate (8N1)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path("payload-state"),
        help="directory for the payload's persistent state (created if missing)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        action="append",
        help="mission configuration file (TOML); a later one overrides the keys it sets",
    )
    parser.add_argument(
        "--dictionary",
        type=Path,
        help="dictionary directory (default: the one shipped with this software)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--record-exit",
        action="store_true",
        help="record how the payload's last run ended, from the supervisor's $SERVICE_RESULT, "
        "$EXIT_CODE and $EXIT_STATUS (systemd's ExecStopPost=), then exit",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.record_exit:
        return record_exit(args.state_dir)
    if args.port is None:
        parser.error("the following arguments are required: --port")
    # A supervisor's SIGABRT (watchdog) leaves every thread's stack in the log.
    faulthandler.enable()
    configure_interpreter()
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config)
        dictionary = load_dictionary(args.dictionary)
        lock_fd = lock_state_dir(args.state_dir)
        port = open_port(args.port, args.baud, read_timeout=READ_TIMEOUT_S)
    except (ConfigError, DictionaryError, StateDirError, PortError) as exc:
        print(f"payload-flight: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        payload = Payload(config, port, args.baud, args.state_dir, dictionary)
    except (
        ConfigError,
        DictionaryError,
        OSError,
        JobStoreError,
        KeyStoreError,
        NotifyError,
    ) as exc:
        port.close()
        os.close(lock_fd)
        print(f"payload-flight: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        payload.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        return payload.run()
    finally:
        port.close()
        os.close(lock_fd)


if __name__ == "__main__":
    sys.exit(main())
