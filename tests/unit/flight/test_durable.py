"""Durable writes never follow a symbolic link planted where they write."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from flight.durable import TMP_SUFFIX, create_durably, replace_atomically


def test_a_link_planted_at_the_temporary_name_is_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    state = tmp_path / "state"
    state.mkdir()
    target = state / "index.json"
    (state / f"index.json{TMP_SUFFIX}").symlink_to(outside)
    replace_atomically(target, b"new index")
    assert target.read_bytes() == b"new index" and not target.is_symlink()
    assert outside.read_bytes() == b"precious"
    assert not (state / f"index.json{TMP_SUFFIX}").exists()


def test_creating_over_a_link_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    link = tmp_path / "journal"
    link.symlink_to(outside)
    with pytest.raises(OSError) as refused:
        create_durably(link, b"x")
    assert refused.value.errno == errno.ELOOP
    assert outside.read_bytes() == b"precious"


def test_a_plain_file_is_written_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    create_durably(path, b"one")
    replace_atomically(path, b"two")
    assert path.read_bytes() == b"two"


def test_a_directory_where_the_file_or_its_temporary_belongs_is_moved_aside(
    tmp_path: Path,
) -> None:
    target = tmp_path / "index.json"
    target.mkdir()
    (tmp_path / f"index.json{TMP_SUFFIX}").mkdir()
    replace_atomically(target, b"new index")
    assert target.read_bytes() == b"new index"
    assert len(list(tmp_path.glob("index.json*.displaced-*"))) == 2
    assert not (tmp_path / f"index.json{TMP_SUFFIX}").exists()
