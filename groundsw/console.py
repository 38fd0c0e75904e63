"""groundsw's output: results on standard output, warnings on standard error, each line flushed
at once so that a pipe or a log sees it as it happens."""

from __future__ import annotations

import sys


def say(line: str) -> None:
    """A line of a command's result."""
    print(line, flush=True)


def warn(line: str) -> None:
    """A line that is not the result: a warning, a state the operator should know of."""
    print(line, file=sys.stderr, flush=True)
