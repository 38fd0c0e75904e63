"""Every test here runs the real programs through a link: marked `hil`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.bench import Bench
from tests.hil.station import run_station


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/hil/" in str(item.fspath):
            item.add_marker(pytest.mark.hil)


@pytest.fixture
def station(make_bench: Any, tmp_path: Path) -> Iterator[tuple[Bench, Path, Path]]:
    """A bench and `groundsw serve` on its link: (bench, data directory, socket)."""
    yield from run_station(make_bench, tmp_path)
