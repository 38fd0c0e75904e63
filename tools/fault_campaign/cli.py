"""Fault-injection campaign: seeded trials of each fault model against the real payload code.

The command line: flags checked, the campaign run, the report written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tools.fault_campaign.abft_comparison import ABFT_SECTION
from tools.fault_campaign.campaign import CampaignConfig, run_campaign
from tools.fault_campaign.models import MODELS
from tools.fault_campaign.outcomes import CampaignError, Target
from tools.fault_campaign.report import write_report


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one sentence on stderr (exit 2) rather than the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"fault_campaign: {message.rstrip('.')}.\n")


def _parser() -> _Parser:
    parser = _Parser(prog="python -m tools.fault_campaign", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="trials per cell")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="directory of the report")
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[*(t.value for t in Target), ABFT_SECTION],
        help="run these targets (and the ABFT comparison) only",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m tools.fault_campaign`; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f"--trials expects at least 1, found {args.trials}")
    if args.seed < 0:
        parser.error(f"--seed expects 0 or more, found {args.seed}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out expects a directory, found a file at {args.out}")
    chosen = set(args.only or [*(t.value for t in Target), ABFT_SECTION])
    config = CampaignConfig(
        trials=args.trials,
        seed=args.seed,
        model=MODELS[args.model],
        targets=tuple(t for t in Target if t.value in chosen),
        abft=ABFT_SECTION in chosen,
    )
    try:
        result = run_campaign(config, lambda line: print(line, file=sys.stderr, flush=True))
        report, chart = write_report(result, args.out)
    except (CampaignError, OSError) as exc:
        print(f"fault_campaign: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report} and {chart}")
    return 0
