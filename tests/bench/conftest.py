"""Benchmarks run under `make bench` only; numbers go to benchmark.extra_info and the output.

The host may be small and busy, so no test asserts an absolute time: ratios are measured within
one run, throughputs are checked against loose bounds only, and every number is also printed in
a summary at the end of the run (shown with or without `-s`).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from spacelink.crc import crcmod_has_c_extension

_REPORT = pytest.StashKey[dict[str, list[str]]]()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """`report(section, line)`: print `line` now and again in the summary at the end of the run."""
    sections = request.config.stash.setdefault(_REPORT, {})

    def add(section: str, line: str) -> None:
        sections.setdefault(section, []).append(line)
        print(f"\n{line}", end="")

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    sections = terminalreporter.config.stash.get(_REPORT, {})
    if not sections:
        return
    terminalreporter.write_sep("=", "spacelink benchmark summary")
    for title, lines in sections.items():
        terminalreporter.write_line(title)
        for line in lines:
            terminalreporter.write_line(f"  {line}")
    if not crcmod_has_c_extension():
        terminalreporter.write_line(
            "WARNING: crcmod runs without its C extension, so every CRC is ~25x slower: "
            "see test_crc_bench.py",
            red=True,
        )
