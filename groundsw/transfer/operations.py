"""The context ground operations on models, jobs and files run in, and the CLI edge they share:
a subcommand per operation, usage errors in one sentence.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from groundsw.payload_link import PayloadLink
from groundsw.progress import Clock, Print
from groundsw.transfer.download import Downloader, DownloadResult
from groundsw.transfer.errors import GroundInputError
from groundsw.transfer.exchange import Exchange
from groundsw.transfer.upload import Uploader
from groundsw.uplink_security import UplinkSecurity
from telemetry_defs.model import Dictionary


@dataclass
class OperationContext:
    """What an operation on models, jobs and files works with."""

    link: PayloadLink
    dictionary: Dictionary
    timeout: float
    baud: int
    out: Print
    err: Print
    tty: bool = False
    clock: Clock = time.monotonic
    security: UplinkSecurity | None = None

    def exchange(self) -> Exchange:
        return Exchange(self.link, self.dictionary, self.timeout, self.clock)

    def uploader(self) -> Uploader:
        return Uploader(self.exchange(), self.out, tty=self.tty)

    def downloader(self) -> Downloader:
        return Downloader(self.exchange(), self.out, self.baud, tty=self.tty)


Operation = Callable[[argparse.Namespace, OperationContext], int]
LocalCheck = Callable[[argparse.Namespace], None]


class OneSentenceParser(argparse.ArgumentParser):
    """Usage errors as one sentence on stderr and exit 2, like every other refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"groundsw: {self.prog.removeprefix('groundsw ')}: {message}\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognised arguments: {' '.join(extra)}")
        return parsed, extra


def add_operation(
    sub: argparse._SubParsersAction[Any],
    name: str,
    help: str,
    run: Operation,
    check: LocalCheck | None = None,
) -> argparse.ArgumentParser:
    """A subcommand that runs `run` on the link after `check` passed on the ground."""
    parser = sub.add_parser(name, help=help, description=help)
    parser.add_argument(
        "--force", action="store_true", help="send even if the payload's dictionary differs"
    )
    parser.set_defaults(operation=run, local_check=check)
    return parser


def download_to(ctx: OperationContext, name: str, out: Path) -> DownloadResult:
    """Download `name` into `out`; a local write failure is a GroundInputError."""
    try:
        return ctx.downloader().download(name, out)
    except OSError as exc:
        raise GroundInputError(f"cannot write {out}: {exc.strerror or exc}") from None
