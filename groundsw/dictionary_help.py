"""`groundsw commands`, `groundsw parameters` and `groundsw cmd NAME --help`: what the dictionary
offers, with arguments, ranges, units and descriptions, read without a link."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable

from telemetry_defs.model import Command, Dictionary, Field, Parameter

Print = Callable[[str], None]
WIDTH = 100


def add_dictionary_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands = sub.add_parser(
        "commands", help="the dictionary's commands; with a NAME, its arguments in full"
    )
    commands.add_argument("name", nargs="?", help="a command (HK_GENERATE...)")
    parameters = sub.add_parser(
        "parameters", help="the dictionary's parameters; with a NAME, one in full"
    )
    parameters.add_argument("name", nargs="?", help="a parameter (CPU_PROCESS...)")
    parameters.add_argument(
        "--settable", action="store_true", help="only those PARAM_SET can change"
    )


def run_commands(dictionary: Dictionary, name: str | None, out: Print) -> int:
    """Every command with its service, subtype and summary; one command in full."""
    if name is not None:
        for line in command_help(dictionary.command(name)):
            out(line)
        return 0
    for command in sorted(dictionary.commands.values(), key=lambda c: (c.service, c.subtype)):
        kind = f"TC[{command.service},{command.subtype}]"
        out(f"{command.name:<28} {kind:<10} {_first_sentence(command.description)}")
    out("")
    out("groundsw commands NAME (or groundsw cmd NAME --help) shows a command's arguments.")
    return 0


def run_parameters(dictionary: Dictionary, name: str | None, settable: bool, out: Print) -> int:
    if name is not None:
        for line in parameter_help(dictionary.parameter(name)):
            out(line)
        return 0
    for p in sorted(dictionary.parameters.values(), key=lambda p: p.id):
        if settable and not p.settable:
            continue
        mark = "settable" if p.settable else ""
        unit = f" [{p.unit}]" if p.unit else ""
        out(f"{p.name:<30} {p.id:>4} {mark:<8} {_first_sentence(p.description)}{unit}")
    return 0


def command_help(command: Command) -> list[str]:
    """A command's description and each argument: type, range, unit, what it refers to."""
    lines = [f"{command.name}: TC[{command.service},{command.subtype}]"]
    lines += _wrapped(command.description, "  ")
    if not command.arguments:
        lines.append("  no arguments")
    else:
        lines.append("arguments (key=value):")
        for field in command.arguments:
            lines += _field_lines(field)
    return lines


def parameter_help(p: Parameter) -> list[str]:
    lines = [f"{p.name}: parameter {p.id}, {p.type.name}{' (settable)' if p.settable else ''}"]
    lines += _wrapped(p.description, "  ")
    if p.unit:
        lines.append(f"  unit: {p.unit}")
    if p.range is not None:
        lines.append(f"  range: {p.range[0]:g} to {p.range[1]:g}")
    if p.calibration is not None:
        terms = " + ".join(f"{c:g}*raw^{n}" for n, c in enumerate(p.calibration) if c)
        lines.append(f"  engineering value: {terms or '0'}")
    if p.limits is not None:
        bounds = [
            f"{label} {value:g}"
            for label, value in (
                ("red below", p.limits.red_low),
                ("yellow below", p.limits.yellow_low),
                ("yellow above", p.limits.yellow_high),
                ("red above", p.limits.red_high),
            )
            if value is not None
        ]
        lines.append(f"  limits (engineering): {', '.join(bounds)}")
    if p.default is not None:
        lines.append(f"  default: {p.default}")
    return lines


def _field_lines(field: Field) -> list[str]:
    kind = field.type.name + (f" list (at least {field.min_items})" if field.array else "")
    facts = [kind]
    if field.range is not None:
        facts.append(f"{field.range[0]:g} to {field.range[1]:g}")
    if field.unit:
        facts.append(field.unit)
    if field.refers:
        facts.append(f"a {field.refers} name or number")
    lines = [f"  {field.name:<16} {', '.join(facts)}"]
    lines += _wrapped(field.description, " " * 19)
    return lines


def _wrapped(text: str, indent: str) -> list[str]:
    if not text:
        return []
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent)


def _first_sentence(text: str) -> str:
    first = text.split(". ")[0].rstrip(".")
    return first if len(first) <= 70 else first[:67] + "..."
