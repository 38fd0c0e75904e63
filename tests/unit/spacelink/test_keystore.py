"""The payload's key file on disk: private or refused, rewritten atomically and privately."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from spacelink.keystore import KeyStoreError, read_keys, write_keys
from spacelink.sdls import Algorithm, SecurityAssociation

SAS = [
    SecurityAssociation(1, Algorithm.HMAC_SHA256, bytes(range(32))),
    SecurityAssociation(2, Algorithm.AES_GCM, bytes(range(16))),
]


def test_written_keys_are_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    write_keys(path, SAS, comment="test keys")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_keys(path) == SAS
    assert not list(tmp_path.glob(".*.new"))


def test_a_rewrite_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    write_keys(path, SAS)
    # A partial file left by a power cut, with loose permissions, does not leak into the new one.
    partial = tmp_path / ".keys.toml.new"
    partial.write_text("garbage")
    partial.chmod(0o644)
    write_keys(path, SAS[1:])
    assert read_keys(path) == SAS[1:]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keys.toml"
    write_keys(path, SAS)
    path.chmod(mode)
    with pytest.raises(KeyStoreError) as refused:
        read_keys(path)
    assert f"mode {mode:04o}" in str(refused.value) and "chmod 600" in str(refused.value)


def test_missing_symlinked_and_invalid_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="does not exist"):
        read_keys(tmp_path / "none.toml")
    real = tmp_path / "real.toml"
    write_keys(real, SAS)
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    with pytest.raises(KeyStoreError, match="cannot open"):
        read_keys(link)
    bad = tmp_path / "bad.toml"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'[[sa]]\nspi = 1\nalgorithm = "AES_CMAC"\nkey = "00"\n')
    os.close(fd)
    with pytest.raises(KeyStoreError, match="needs a key of 16 or 32"):
        read_keys(bad)
    directory = tmp_path / "dir.toml"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyStoreError):
        read_keys(directory)
