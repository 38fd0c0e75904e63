"""hil-bench: run the payload on an emulated serial link for a ground tool to talk to.

`hil-bench run` prints `ground-port: PATH` as the first line of its standard output, then link
statistics every few seconds, until interrupted; it stops everything it started.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from hil.bench import Bench, BenchError
from spacelink.icd import DEFAULT_BAUD

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="emulated link + payload until interrupted")
    run.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    run.add_argument("--state-dir", type=Path, help="payload state (default: a new temp dir)")
    run.add_argument(
        "--stats-interval", type=float, default=10.0, help="seconds between statistics lines"
    )
    return parser


def _stats_line(bench: Bench) -> str:
    up, down = bench.link.stats("uplink"), bench.link.stats("downlink")
    return f"uplink {up.octets_out} octets, downlink {down.octets_out} octets" + (
        f", overflow drops {up.overflow_drops}/{down.overflow_drops}"
        if up.overflow_drops or down.overflow_drops
        else ""
    )


def run(args: argparse.Namespace) -> int:
    if args.baud <= 0:
        print(f"hil-bench: baud rate {args.baud} is not a positive number", file=sys.stderr)
        return EXIT_USAGE
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="hil-bench-")) / "state"
    bench = Bench(state_dir, baud=args.baud)
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        bench.start()
    except BenchError as exc:
        print(f"hil-bench: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        print(f"ground-port: {bench.ground_port}", flush=True)
        print(f"state-dir: {state_dir}\nflight-log: {bench.flight_log}", flush=True)
        while not stop.wait(args.stats_interval):
            if bench.flight is None or bench.flight.poll() is not None:
                code = bench.flight.returncode if bench.flight else None
                print(
                    f"hil-bench: payload-flight exited ({code}); see {bench.flight_log}",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            if bench.link.error is not None:
                print(f"hil-bench: link relay failed: {bench.link.error}", file=sys.stderr)
                return EXIT_FAILED
            print(_stats_line(bench), flush=True)
        print(_stats_line(bench), flush=True)
        return EXIT_OK
    finally:
        bench.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run(args)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
