"""`python -m flight.worker --connect ADDRESS --factory MODULE:FUNCTION ...`: one worker.

The authkey comes through an inherited pipe (`--authkey-fd`, what the supervisor uses) or the
environment (`FLIGHT_WORKER_AUTHKEY`, hex), never the command line, which `ps` shows to all.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from flight.worker.limits import Limits, apply_limits, die_with_parent, parse_cpus
from flight.worker.losses import ExitCode

AUTHKEY_ENV = "FLIGHT_WORKER_AUTHKEY"


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, found {text!r}")
    return key, value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m flight.worker", description=__doc__)
    parser.add_argument("--connect", required=True, help="unix:PATH or tcp:HOST:PORT")
    parser.add_argument("--factory", required=True, help="MODULE:FUNCTION building the handlers")
    parser.add_argument("--name", default="worker", help="the board this worker computes for")
    parser.add_argument(
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to the factory; repeatable",
    )
    parser.add_argument("--authkey-fd", type=int, help="read the authkey from this descriptor")
    parser.add_argument("--parent-pid", type=int, help="exit at once if the parent is not this")
    parser.add_argument("--heartbeat-s", type=float, default=0.5)
    parser.add_argument("--connect-timeout-s", type=float, default=10.0)
    parser.add_argument("--limit-data", type=int, metavar="BYTES")
    parser.add_argument("--limit-as", type=int, metavar="BYTES")
    parser.add_argument("--limit-core", type=int, metavar="BYTES")
    parser.add_argument("--cpus", type=parse_cpus, metavar="LIST", help="e.g. 0,2-3")
    parser.add_argument("--nice", type=int)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)  # fmt: skip


def read_authkey(fd: int | None) -> bytes:
    """From the inherited pipe (read to its end, then closed), else from the environment."""
    if fd is not None:
        with os.fdopen(fd, "rb") as pipe:
            return pipe.read()
    # Popped, so that whatever the worker starts does not inherit it.
    text = os.environ.pop(AUTHKEY_ENV, "")
    if not text:
        raise SystemExit(f"worker: no authkey (--authkey-fd or ${AUTHKEY_ENV})")
    return bytes.fromhex(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not die_with_parent(args.parent_pid):
        return ExitCode.PARENT_GONE
    apply_limits(Limits(args.limit_data, args.limit_as, args.cpus, args.nice, args.limit_core))
    authkey = read_authkey(args.authkey_fd)
    logging.basicConfig(
        level=args.log_level,
        format=f"worker[{args.name} {os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    # Imported after the limits are set: whatever they allocate is bound by them.
    from flight.worker.connection import connect, parse_address
    from flight.worker.serve import WorkerServer, load_factory

    channel = connect(parse_address(args.connect), authkey, args.connect_timeout_s)
    server = WorkerServer(
        channel,
        lambda context: load_factory(args.factory)(context),
        name=args.name,
        options=dict(args.option),
        heartbeat_s=args.heartbeat_s,
    )
    return server.serve()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    # Not sys.exit: a lane thread may be stuck in native code, and interpreter shutdown waits.
    os._exit(code)
