"""The kernel's boot id and uptime from /proc (or a test's files), and the reboot command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flight.lifecycle.board import LinuxBoard, RebootFailed


def test_boot_id_and_uptime_come_from_their_files(tmp_path: Path) -> None:
    (tmp_path / "boot_id").write_text("0c6a4bb6-1d1e-4c8b-9c57-6a3f0b7d0a11\n")
    (tmp_path / "uptime").write_text("27316.52 53012.33\n")
    board = LinuxBoard(tmp_path / "boot_id", tmp_path / "uptime")
    assert board.boot_id() == "0c6a4bb6-1d1e-4c8b-9c57-6a3f0b7d0a11"
    assert board.uptime_s() == 27316.52


def test_without_the_files_there_is_no_boot_id_and_no_uptime(tmp_path: Path) -> None:
    board = LinuxBoard(tmp_path / "none", tmp_path / "none")
    assert board.boot_id() == ""
    assert board.uptime_s() == 0.0


@pytest.mark.skipif(not Path("/proc/sys/kernel/random/boot_id").exists(), reason="not Linux")
def test_this_kernel_has_a_boot_id_and_an_uptime() -> None:
    board = LinuxBoard()
    assert len(board.boot_id()) == 36 and board.uptime_s() > 0


def test_a_reboot_command_that_succeeds_returns() -> None:
    LinuxBoard().reboot([sys.executable, "-c", "pass"])


def test_a_reboot_command_that_fails_says_how() -> None:
    script = "import sys; print('Failed to reboot: access denied', file=sys.stderr); sys.exit(1)"
    with pytest.raises(RebootFailed, match="exited with status 1: Failed to reboot: access denied"):
        LinuxBoard().reboot([sys.executable, "-c", script])


def test_a_reboot_command_that_does_not_exist_fails(tmp_path: Path) -> None:
    with pytest.raises(RebootFailed, match="no-such-reboot"):
        LinuxBoard().reboot([str(tmp_path / "no-such-reboot")])
