"""groundsw: the operators' command-line tool. Errors end as one sentence and an exit code.

Exit codes: 0 success, 1 the payload refused or failed a command, 2 bad usage or port,
3 no answer (link down, timeout, COP-1 gave up).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from groundsw.ping import CommandFailed, run_ping
from groundsw.session import InitMode, LinkSession, LinkTimeout, default_t1
from spacelink.cop1 import FopConfig
from spacelink.errors import Cop1Error, LinkError
from spacelink.icd import DEFAULT_BAUD
from spacelink.serialport import PortError, open_port

EXIT_OK = 0
EXIT_COMMAND_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 3


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="groundsw", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port",
        default=os.environ.get("GROUNDSW_PORT"),
        help="serial device path or pyserial URL (default: $GROUNDSW_PORT)",
    )
    parser.add_argument("--baud", type=_positive_int, default=DEFAULT_BAUD)
    parser.add_argument(
        "--timeout", type=_positive_float, default=10.0, help="seconds to wait for an answer"
    )
    parser.add_argument(
        "--cop-init",
        choices=[m.value for m in InitMode],
        default=InitMode.AUTO.value,
        help="how to start COP-1: from the CLCW (auto, with Unlock if locked out), "
        "clcw, unlock, or setvr (resets the payload's V(R) to 0)",
    )
    parser.add_argument("--source-id", type=int, default=1, help="PUS source ID of this ground")
    parser.add_argument("-v", "--verbose", action="store_true", help="log link details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ping = sub.add_parser("ping", help="TC[17,1] are-you-alive, with each verification stage")
    ping.add_argument("--count", type=_positive_int, default=1)
    ping.add_argument("--interval", type=float, default=0.0, help="seconds between pings")
    return parser


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[LinkSession]:
    """Open the port, acquire the link and start the AD service."""
    if not args.port:
        raise PortError("no serial port given: use --port PORT or set GROUNDSW_PORT")
    port = open_port(args.port, args.baud)
    try:
        session = LinkSession(
            port, baud=args.baud, source_id=args.source_id, fop=FopConfig(t1=default_t1(args.baud))
        )
        with session:
            link_up = session.initiate(InitMode(args.cop_init), args.timeout)
            print(f"link up on {args.port}: {link_up}")
            yield session
    finally:
        port.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        with connect(args) as session:
            if args.command == "ping":
                run_ping(session, args.count, args.interval, args.timeout, print)
    except PortError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except CommandFailed as exc:
        return _fail(str(exc), EXIT_COMMAND_FAILED)
    except (LinkTimeout, Cop1Error) as exc:
        return _fail(str(exc), EXIT_NO_ANSWER)
    except LinkError as exc:
        return _fail(str(exc), EXIT_NO_ANSWER)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_NO_ANSWER)
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    print(f"groundsw: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
