"""Worker limits on its command line."""

from __future__ import annotations

import pytest

from flight.worker.__main__ import parse_args
from flight.worker.limits import Limits, parse_cpus


def test_cpu_lists_parse_as_taskset_writes_them() -> None:
    assert parse_cpus("0,2-3") == {0, 2, 3}
    assert parse_cpus("1") == {1}
    with pytest.raises(ValueError):
        parse_cpus("x")


def test_limits_travel_on_the_command_line_and_back() -> None:
    limits = Limits(data_bytes=1 << 30, address_space_bytes=None, cpus=frozenset({1, 3}), nice=5)
    args = parse_args(["--connect", "/tmp/x.sock", "--factory", "m:f", *limits.to_args()])
    parsed = Limits(args.limit_data, args.limit_as, args.cpus, args.nice, args.limit_core)
    assert parsed == limits
    assert limits.memory_bytes == 1 << 30
    assert Limits().to_args() == ["--limit-core", "0"]  # no core files by default
    assert Limits(core_bytes=None).to_args() == []
