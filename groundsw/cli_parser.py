"""The command line groundsw takes: its global options, each command's parser (most added by the
module that runs the command), and the global options accepted after a subcommand too."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from groundsw.command_history import add_history_command
from groundsw.contact_commands import add_contact_commands
from groundsw.dictionary_help import add_dictionary_commands
from groundsw.history_commands import add_events_command, add_tm_commands
from groundsw.job_commands import add_job_commands
from groundsw.key_commands import add_key_commands
from groundsw.link_bringup import InitMode
from groundsw.model_commands import add_model_commands
from groundsw.pass_commands import add_pass_commands
from groundsw.plan_commands import add_plan_commands
from groundsw.schedule_commands import add_schedule_commands
from groundsw.station.config import default_data_dir
from groundsw.station_commands import add_station_commands
from groundsw.transfer import OneSentenceParser, add_file_commands
from groundsw.uplink_security import keys_from_environment
from spacelink.icd import DEFAULT_BAUD, TmCoding
from telemetry_defs.loader import load_dictionary

DESCRIPTION = (
    "groundsw: the operators' command-line tool. Errors end as one sentence and an exit code."
)


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


TM_CODINGS = tuple(c.value for c in TmCoding)


def build_parser() -> argparse.ArgumentParser:
    """groundsw's argument parser, every command in it."""
    parser = argparse.ArgumentParser(prog="groundsw", description=DESCRIPTION)
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument(
        "--port",
        default=os.environ.get("GROUNDSW_PORT"),
        help="serial device path or pyserial URL (default: $GROUNDSW_PORT)",
    )
    parser.add_argument("--baud", type=_positive_int, default=DEFAULT_BAUD)
    parser.add_argument(
        "--tm-coding",
        choices=TM_CODINGS,
        default=os.environ.get("GROUNDSW_TM_CODING", "rs"),
        help="TM channel coding the payload sends: rs (Reed-Solomon, ICD v2) or none (a v1 "
        "link) (default: $GROUNDSW_TM_CODING, else rs)",
    )
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
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="ground data directory: each payload's archive, the running ground station "
        "(default: $GROUNDSW_DATA, else $XDG_DATA_HOME/groundsw or ~/.local/share/groundsw)",
    )
    parser.add_argument(
        "--payload",
        help="the payload, by its name at the ground station (needed when it has several; "
        "default: the one of --port, or 'payload')",
    )
    parser.add_argument(
        "--dictionary", type=Path, help="dictionary directory (default: the shipped one)"
    )
    parser.add_argument(
        "--keys",
        type=Path,
        default=keys_from_environment(),
        help="uplink key file (default: $GROUNDSW_KEYS); without one, frames go out "
        "unauthenticated, which a payload requiring authentication discards",
    )
    parser.add_argument(
        "--spi", type=int, help="security association to use (default: the key file's first)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the link's traffic: every frame and packet",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ping = sub.add_parser("ping", help="TC[17,1] are-you-alive, with each verification stage")
    ping.add_argument("--count", type=_positive_int, default=1)
    ping.add_argument("--interval", type=float, default=0.0, help="seconds between pings")
    cmd = sub.add_parser(
        "cmd",
        add_help=False,
        help="send any dictionary command: cmd NAME key=value ... (cmd NAME --help: arguments)",
        description="Send a dictionary command; arguments are checked before anything is sent. "
        "PARAM_SET takes PARAMETER=VALUE pairs; lists are comma-separated; structures and "
        "parameters may be named instead of numbered.",
    )
    cmd.add_argument("name", nargs="?", help="command name, e.g. HK_GENERATE")
    cmd.add_argument("arguments", nargs="*", metavar="key=value")
    cmd.add_argument(
        "--list", action="store_true", help="list the dictionary's commands (groundsw commands)"
    )
    cmd.add_argument(
        "--force", action="store_true", help="send even if the payload's dictionary differs"
    )
    cmd.set_defaults(cmd_parser=cmd)
    cmd.add_argument(
        "-h",
        "--help",
        dest="show_help",
        action="store_true",
        help="this help; with a NAME, the command's arguments, ranges, units and descriptions",
    )
    tm = sub.add_parser("tm", help="telemetry: live view, archive queries and plots")
    tm_sub = tm.add_subparsers(
        dest="tm_command", required=True, metavar="TM_COMMAND", parser_class=OneSentenceParser
    )
    live = tm_sub.add_parser("live", help="live table of the latest values with limit colours")
    live.add_argument(
        "--duration", type=_positive_float, help="seconds to run (default: until Ctrl-C)"
    )
    live.add_argument(
        "--refresh",
        action="store_true",
        help="ask for one report of every housekeeping structure at start (TC[3,27])",
    )
    live.add_argument(
        "--force",
        action="store_true",
        help="send the --refresh command even if the payload's dictionary differs",
    )
    live.add_argument(
        "--structure",
        action="append",
        default=[],
        metavar="NAME",
        help="show this housekeeping structure (repeatable; default: all, in pages that fit)",
    )
    live.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME",
        help="show this parameter (repeatable)",
    )
    add_tm_commands(tm_sub)
    add_events_command(sub)
    add_history_command(sub)
    add_model_commands(sub)
    add_job_commands(sub)
    add_schedule_commands(sub)
    add_file_commands(sub)
    add_key_commands(sub)
    add_station_commands(sub)
    add_pass_commands(sub)
    add_contact_commands(sub)
    add_plan_commands(sub)
    add_dictionary_commands(sub)
    accept_global_options_after_subcommands(parser)
    return parser


def accept_global_options_after_subcommands(parser: argparse.ArgumentParser) -> None:
    """Let `groundsw ping --port P` mean `groundsw --port P ping`: every subcommand also takes
    the global options it does not define itself, without replacing a value given before it."""
    globals_ = [
        a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")
    ]
    for subparser in _subparsers(parser):
        taken = set(subparser._option_string_actions)
        for action in globals_:
            names = [o for o in action.option_strings if o not in taken]
            if len(names) != len(action.option_strings):
                continue  # the subcommand has an option of that name: its own
            kwargs: dict[str, Any] = {"dest": action.dest, "default": argparse.SUPPRESS}
            if action.nargs == 0:
                kwargs["action"] = "store_true" if action.const is True else "store_const"
                if action.const is not True:
                    kwargs["const"] = action.const
            else:
                kwargs.update(type=action.type, choices=action.choices, metavar=action.metavar)
            subparser.add_argument(*names, help=argparse.SUPPRESS, **kwargs)


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield child
                yield from _subparsers(child)


class _VersionAction(argparse.Action):
    """--version: groundsw's and its dictionary's, loaded only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=0, help="groundsw's and its dictionary's version"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        dictionary = load_dictionary(None)
        print(
            f"groundsw {package_version()}, dictionary {dictionary.name} {dictionary.version} "
            f"(0x{dictionary.hash32:08X})"
        )
        parser.exit(0)


def package_version() -> str:
    """The installed distribution's version, or "(not installed)" when run from a checkout."""
    try:
        return importlib.metadata.version("orbital-inference-payload")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"
