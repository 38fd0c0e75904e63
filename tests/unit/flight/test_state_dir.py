"""The state directory's lock and the [storage] limits, as the payload process sets them up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flight.config import ConfigError, load_config
from flight.launch import StateDirError, lock_state_dir


def test_the_lock_is_exclusive_and_private(tmp_path: Path) -> None:
    fd = lock_state_dir(tmp_path / "state")
    try:
        assert (os.stat(tmp_path / "state" / ".lock").st_mode & 0o777) == 0o600
        with pytest.raises(StateDirError, match="in use by another payload-flight process"):
            lock_state_dir(tmp_path / "state")
    finally:
        os.close(fd)


def test_a_lock_file_planted_as_a_link_is_refused_not_followed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    outside = tmp_path / "outside"
    (state / ".lock").symlink_to(outside)
    with pytest.raises(StateDirError, match=r"\.lock: a symbolic link, not followed"):
        lock_state_dir(state)
    assert not outside.exists()


def test_storage_limits_come_from_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "payload.toml"
    path.write_text("[storage]\nmax_uploads = 3\nmax_downloads = 2\nmax_ranges = 100\n")
    storage = load_config(path).storage
    assert (storage.max_uploads, storage.max_downloads, storage.max_ranges) == (3, 2, 100)
    assert load_config(None).storage.max_uploads == 64


@pytest.mark.parametrize("key", ["max_uploads", "max_downloads", "max_ranges"])
def test_a_storage_limit_below_one_is_refused(tmp_path: Path, key: str) -> None:
    path = tmp_path / "payload.toml"
    path.write_text(f"[storage]\n{key} = 0\n")
    with pytest.raises(ConfigError, match=f"{key} must be at least 1"):
        load_config(path)
