"""The board under the payload, as the kernel tells it: its boot id, its uptime, and a reboot.

Behind the small `Board` interface so that tests drive a reboot by changing a boot id.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
UPTIME_PATH = Path("/proc/uptime")
# A reboot command only asks for the reboot (systemctl reboot returns at once); longer is a fault.
REBOOT_COMMAND_TIMEOUT_S = 30.0


class RebootFailed(Exception):
    """The reboot command could not run, or said it failed."""


class Board(Protocol):
    def boot_id(self) -> str:
        """Changes at every boot of the kernel; "" where the kernel gives none."""
        ...

    def uptime_s(self) -> float:
        """Seconds since the kernel booted; 0 where unknown."""
        ...

    def reboot(self, command: list[str]) -> None:
        """Ask for a reboot with `command`; RebootFailed when it cannot run or fails."""
        ...


class LinuxBoard:
    """The kernel's /proc files, and the reboot command run as a child process."""

    def __init__(self, boot_id_path: Path = BOOT_ID_PATH, uptime_path: Path = UPTIME_PATH) -> None:
        self._boot_id_path = boot_id_path
        self._uptime_path = uptime_path

    def boot_id(self) -> str:
        try:
            return self._boot_id_path.read_text().strip()
        except OSError as exc:  # not Linux: every start counts as the same boot
            log.warning("no boot id (%s): a board restart cannot be told from a crash", exc)
            return ""

    def uptime_s(self) -> float:
        try:
            return float(self._uptime_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0

    def reboot(self, command: list[str]) -> None:
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=REBOOT_COMMAND_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise RebootFailed(f"{command[0]}: {exc}") from None
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            raise RebootFailed(
                f"{command[0]} exited with status {done.returncode}"
                + (f": {said[-1]}" if said else "")
            )
