"""`groundsw history`: every command sent on the link, by whom, when, and each stage of it, read
back from the archive (no link needed)."""

from __future__ import annotations

import argparse

from groundsw.archive import CommandHistory
from groundsw.history_commands import HistoryContext
from groundsw.timespec import parse_time, utc_text


def add_history_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = sub.add_parser(
        "history", help="commands sent, by whom and when, with each verification stage"
    )
    history.add_argument("--since", default="1h", help="duration before now or ISO time (1h)")
    history.add_argument("--limit", type=int, default=0, help="only the last N commands")
    history.add_argument(
        "--stages", action="store_true", help="one line per stage under each command"
    )
    history.set_defaults(handler=run_history)


def run_history(args: argparse.Namespace, ctx: HistoryContext) -> int:
    commands = ctx.archive.commands(parse_time(args.since, ctx.now()), args.limit)
    if not commands:
        ctx.out(f"no command since {utc_text(parse_time(args.since, ctx.now()))}")
    for command in commands:
        for line in history_lines(command, args.stages):
            ctx.out(line)
    return 0


def history_lines(command: CommandHistory, stages: bool) -> list[str]:
    """A command's line (time, sender, command and arguments, request, outcome), then its
    stages relative to its submission when asked."""
    arguments = f" {command.arguments}" if command.arguments else ""
    lines = [
        f"{utc_text(command.submitted_at)}  {command.name}{arguments}  [{command.request}]  "
        f"{command.outcome}  by {command.client}"
    ]
    if stages:
        for stage in command.stages:
            detail = f"  {stage.detail}" if stage.detail else ""
            lines.append(f"    {stage.at - command.submitted_at:+8.3f} s  {stage.stage}{detail}")
    return lines
