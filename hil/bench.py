"""A bench run: the emulated link plus a payload-flight process on its flight end.

Used by `hil-bench run`, the HIL test fixtures and the demo. The payload runs under the bench's
supervisor, as under systemd on a board (hil/supervisor.py): notify socket, watchdog, restart
after any end that was not a deliberate stop, the exit recorder after every end. It is started
so that it dies with the bench's process even when that process is killed (Linux parent-death
signal).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from flight.config import SecurityConfig
from flight.lifecycle.manager import RESTART_EXIT_STATUS
from hil.impairments import Impairments
from hil.ptylink import PtyLink
from hil.supervision import Phase, ServicePolicy
from hil.supervisor import Supervisor, SupervisorError
from spacelink.icd import TmCoding
from spacelink.keystore import create_keys
from spacelink.sdls import Algorithm, SecurityAssociation

DEVELOPMENT_SPI = 1
# Where the payload finds its key file by default (in its state directory).
PAYLOAD_KEY_FILE = SecurityConfig().key_file

_PR_SET_PDEATHSIG = 1


# The payload's unit on the bench: as deploy/systemd/payload-flight.service, with times that
# suit a test (a test of the watchdog itself gives a shorter one).
BENCH_SUPERVISION = ServicePolicy(
    watchdog_s=30.0,
    start_timeout_s=60.0,
    stop_timeout_s=10.0,
    abort_timeout_s=5.0,
    restart_delay_s=0.5,
    start_limit_interval_s=60.0,
    start_limit_burst=5,
    success_exit_statuses=(RESTART_EXIT_STATUS,),
)

# The bench has no temperature sensors: the payload runs on its thermal model. The baseplate is
# the spacecraft's interface temperature; the time scale lets a test see an hour in minutes.
DEFAULT_BASEPLATE_C = 20.0


def bench_config(
    baseplate_c: float,
    time_scale: float,
    authentication: bool = True,
    tm_coding: TmCoding = TmCoding.RS,
) -> str:
    """The payload configuration the bench gives before any of the caller's (which override it).

    `authentication`: the payload requires its uplink authenticated under the bench's
    development key (its copy in the state directory); False turns authentication off.
    `tm_coding`: the TM channel coding the payload sends (ICD 6a)."""
    # The governor polls a few model seconds apart at any speed-up (0.5 s at real time).
    poll_s = min(0.5, 3.0 / time_scale)
    if not authentication:
        security = '[security]\nauthentication = "off"\n'
    else:
        # The payload reads its own copy in its state directory (the default key_file), as on
        # a board provisioned before flight: a rotation must be saved there, not in the ground's.
        security = '[security]\nauthentication = "required"\n'
    return (
        "# Written by the HIL bench: the payload's temperatures come from its thermal model,\n"
        "# its uplink key is the bench's development key.\n"
        f"{security}"
        f'[link]\ntm_coding = "{tm_coding.value}"\n'
        "[thermal]\n"
        'source = "simulated"\n'
        f"poll_interval_s = {poll_s!r}\n"
        "[thermal_model]\n"
        f"baseplate_c = {float(baseplate_c)!r}\n"
        f"time_scale = {float(time_scale)!r}\n"
        "[lifecycle]\n"
        "allow_reboot = false\n"
    )


def create_development_key(path: Path) -> None:
    """A new random key file for a bench (one HMAC-SHA-256 SA, SPI 1), private to this user."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sa = SecurityAssociation(DEVELOPMENT_SPI, Algorithm.HMAC_SHA256, os.urandom(32))
    create_keys(path, [sa], "Development key of a HIL bench: not for flight.")


class BenchError(Exception):
    """The bench could not start or its payload process failed."""


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: rely on the bench's own cleanup
        pass


def flight_command(port: str, baud: int, state_dir: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "flight",
        "--port", port, "--baud", str(baud), "--state-dir", str(state_dir), *extra,
    ]  # fmt: skip


def exit_recorder_command(state_dir: Path) -> list[str]:
    """The unit's ExecStopPost: payload-flight --record-exit, without loading the payload."""
    return [sys.executable, "-m", "flight.lifecycle.record_exit", "--state-dir", str(state_dir)]


class Bench:
    """Emulated link + payload process; `ground_port` is where a ground tool connects."""

    def __init__(
        self,
        state_dir: Path,
        *,
        baud: int = 115200,
        uplink: Impairments | None = None,
        downlink: Impairments | None = None,
        seed: int = 0,
        flight_log: Path | None = None,
        flight_args: list[str] | None = None,
        baseplate_c: float = DEFAULT_BASEPLATE_C,
        time_scale: float = 1.0,
        authentication: bool = True,
        tm_coding: TmCoding = TmCoding.RS,
        supervision: ServicePolicy = BENCH_SUPERVISION,
    ) -> None:
        """`baseplate_c`, `time_scale`: the payload's thermal model (see `bench_config`).
        `authentication`: the uplink is authenticated with a development key the bench
        generates (`key_file`, for the ground too); False turns it off. `supervision`: the
        supervisor's watchdog, timeouts, restart delay and start limit."""
        if time_scale <= 0:
            raise BenchError(f"time scale must be above 0, found {time_scale:g}")
        self.state_dir = state_dir
        self.baud = baud
        self.flight_log = flight_log or state_dir.parent / f"{state_dir.name}-flight.log"
        self.flight_args = flight_args or []
        self.config_path = state_dir.parent / f"{state_dir.name}-bench.toml"
        self.key_file: Path | None = (
            state_dir.parent / f"{state_dir.name}-keys.toml" if authentication else None
        )
        self.tm_coding = tm_coding
        self.bench_config = bench_config(baseplate_c, time_scale, authentication, tm_coding)
        self.link = PtyLink(baud, uplink=uplink, downlink=downlink, seed=seed)
        self.supervision = supervision
        self.supervisor: Supervisor | None = None
        self._log_file: IO[bytes] | None = None

    def _provision_key(self, key_file: Path) -> None:
        """Generate the development key once, and give the payload a copy of it (mode 0600)."""
        if not key_file.exists():
            create_development_key(key_file)
        board = self.state_dir / PAYLOAD_KEY_FILE
        if not board.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(board, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key_file.read_bytes())

    @property
    def ground_port(self) -> str:
        return self.link.ground_port

    @property
    def flight(self) -> subprocess.Popen[bytes] | None:
        """The payload's current process (None: stopped, or between two runs)."""
        return None if self.supervisor is None else self.supervisor.process

    def flight_failure(self) -> str | None:
        """Why the supervisor gave up on the payload (start limit hit, a failed start); None
        while it runs or restarts."""
        supervisor = self.supervisor
        if supervisor is None or supervisor.phase is not Phase.FAILED:
            return None
        return supervisor.machine.failure

    def start(self, ready_timeout: float = 15.0) -> Bench:
        self.link.start()
        try:
            self.start_flight(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_flight(self, ready_timeout: float = 15.0) -> None:
        """Start (or restart) the payload under its supervisor and wait for its READY=1 and
        its first frame on the link."""
        if self.supervisor is not None:
            raise BenchError("the payload is running: stop_flight first")
        self.flight_log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.flight_log, "ab")  # noqa: SIM115 - closed in stop_flight
        self.config_path.write_text(self.bench_config)
        if self.key_file is not None:
            self._provision_key(self.key_file)
        before = self.link.stats("downlink").octets_in
        args = ["--config", str(self.config_path), *self.flight_args]
        deadline = time.monotonic() + ready_timeout
        self.supervisor = Supervisor(
            flight_command(self.link.flight_port, self.baud, self.state_dir, args),
            self.supervision,
            stop_post=exit_recorder_command(self.state_dir),
            output=self._log_file,
            preexec_fn=die_with_parent,
        )
        try:
            self.supervisor.start(ready_timeout)
        except SupervisorError as exc:
            failed, self.supervisor = self.supervisor, None
            raise self._failed(failed, exc) from None
        while self.link.stats("downlink").octets_in == before:
            if time.monotonic() > deadline:
                raise BenchError(f"payload-flight sent nothing within {ready_timeout:g} s")
            time.sleep(0.02)

    def _failed(self, supervisor: Supervisor, exc: SupervisorError) -> BenchError:
        if supervisor.phase is Phase.FAILED and supervisor.exits:
            status = supervisor.exits[-1].returncode
            return BenchError(f"payload-flight exited with status {status}; see {self.flight_log}")
        return BenchError(f"payload-flight: {exc}; see {self.flight_log}")

    def wait_restarted(self, starts: int, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        """The payload's process of supervised start number `starts` (counted from the last
        start_flight, 1 being its own), once it serves the link again."""
        if self.supervisor is None:
            raise BenchError("the payload is not supervised: start_flight first")
        try:
            return self.supervisor.wait_ready(starts, timeout)
        except SupervisorError as exc:
            raise self._failed(self.supervisor, exc) from None

    def stop_flight(
        self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0
    ) -> int | None:
        """Stop the payload on purpose with `sig` (SIGKILL for a crash), SIGKILL after
        `timeout`; its supervisor does not start it again. The last process's exit status."""
        status = None
        if self.supervisor is not None:
            status = self.supervisor.stop(sig, timeout)
            self.supervisor = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return status

    def stop(self) -> None:
        self.stop_flight()
        self.link.stop()

    def __enter__(self) -> Bench:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def flight_log_text(self) -> str:
        try:
            return self.flight_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
