"""The board's power mode: `nvpmodel` on a Jetson, nothing elsewhere.

The governor lowers the power mode when it throttles, where a payload is configured for it.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from typing import Protocol

from flight.thermal.readings import shortened

log = logging.getLogger(__name__)

# Real nvpmodel asks before rebooting when a mode change needs one; the payload never reboots
# on its own, so the question is always answered no.
_REBOOT_ANSWER = "NO\n"
# Distinct failures of `current()` remembered for logging once each; bounded, in case a
# failure's text varies from call to call.
_MAX_REMEMBERED_FAILURES = 32


class PowerModeError(Exception):
    """The power mode could not be read or set; the message is a one-line reason."""


class PowerControl(Protocol):
    """What sets the board's power mode."""

    def current(self) -> int | None:
        """The current power mode number; None when unknown."""
        ...

    def set(self, mode: int) -> None:
        """Switch to `mode`; PowerModeError with a one-line reason when that fails."""
        ...


class NoPowerControl:
    """A payload without power-mode control (boards without nvpmodel, the bench)."""

    def current(self) -> int | None:
        """Always unknown."""
        return None

    def set(self, mode: int) -> None:
        """Always fails: there is nothing to set."""
        raise PowerModeError("no power-mode control on this payload")


def parse_mode(output: str) -> int | None:
    """The mode number in the output of `nvpmodel -q`: its last line holding only digits."""
    for line in reversed(output.splitlines()):
        stripped = line.strip()
        if stripped.isascii() and stripped.isdigit():
            return int(stripped)
    return None


class Nvpmodel:
    """The power mode through L4T's `nvpmodel` (`-q` to query, `-m N` to set).

    nvpmodel needs root: the payload's service user has a sudoers rule for exactly
    `nvpmodel -m *` and `nvpmodel -q`, so `command` is then `("sudo", "-n", "nvpmodel")`.
    """

    def __init__(self, command: Sequence[str] = ("nvpmodel",), timeout_s: float = 10.0) -> None:
        if not command:
            raise ValueError("nvpmodel command is empty")
        self._command = tuple(command)
        self._timeout_s = timeout_s
        self._failures_logged: set[str] = set()

    def current(self) -> int | None:
        """The current power mode; None (logged once per distinct failure) when unknown."""
        try:
            output = self._run("-q", answer=None)
        except PowerModeError as exc:
            self._log_failure(str(exc))
            return None
        mode = parse_mode(output)
        if mode is None:
            self._log_failure(f"no mode number in the output of -q: {shortened(repr(output))}")
            return None
        # After a recovery a recurring failure is worth a line in the log again.
        self._failures_logged.clear()
        return mode

    def set(self, mode: int) -> None:
        """Switch to `mode` and read it back; PowerModeError when either fails."""
        if isinstance(mode, bool) or not isinstance(mode, int) or mode < 0:
            raise PowerModeError(f"power mode must be a non-negative integer, not {mode!r}")
        self._run("-m", str(mode), answer=_REBOOT_ANSWER)
        now = self.current()
        if now != mode:
            found = "unknown" if now is None else str(now)
            raise PowerModeError(f"asked for power mode {mode}, nvpmodel reports {found}")
        log.info("power mode set to %d", mode)

    def _run(self, *args: str, answer: str | None) -> str:
        """Run nvpmodel with `args`, `answer` on stdin (or none); its stdout on success."""
        argv = [*self._command, *args]
        shown = " ".join(argv)
        try:
            # No answer: stdin is closed at once, so a prompt reads end of file, never blocks.
            result = subprocess.run(
                argv,
                input=answer or "",
                capture_output=True,
                text=True,
                timeout=self._timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PowerModeError(f"{shown}: timed out after {self._timeout_s:g} s") from exc
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise PowerModeError(f"{shown}: cannot run: {shortened(reason)}") from exc
        if result.returncode != 0:
            said = _first_line(result.stderr) or _first_line(result.stdout) or "no message"
            raise PowerModeError(f"{shown}: exit status {result.returncode}: {shortened(said)}")
        return result.stdout

    def _log_failure(self, reason: str) -> None:
        if reason in self._failures_logged:
            return
        if len(self._failures_logged) < _MAX_REMEMBERED_FAILURES:
            self._failures_logged.add(reason)
            log.warning("power mode unknown: %s", reason)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
