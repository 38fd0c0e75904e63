"""The bench's service manager on real processes: a small service that speaks sd_notify, killed,
hung, stopped, started wrong; the exit recorder called with what was seen each time."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.supervision import Phase, ServicePolicy
from hil.supervisor import Supervisor, SupervisorError, parse_notification

# The service: READY=1, then a kick every 0.1 s while the file `kick` exists. "early-exit":
# exits with status 2 at once; "child-ready": a child process says READY=1, not the service.
SERVICE = """
import os, socket, subprocess, sys, time
mode, kick = sys.argv[1], sys.argv[2]
if mode == "early-exit":
    sys.exit(2)
address = os.environ["NOTIFY_SOCKET"].replace("@", "\\0", 1)
def notify(text):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(text.encode(), address)
if mode == "child-ready":
    code = "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);"
    code += "s.sendto(b'READY=1', sys.argv[1].replace('@', chr(0), 1))"
    subprocess.run([sys.executable, "-c", code, os.environ["NOTIFY_SOCKET"]], check=True)
    time.sleep(60)
notify("READY=1\\nSTATUS=serving")
while True:
    if os.path.exists(kick):
        notify("WATCHDOG=1")
    time.sleep(0.1)
"""
RECORDER = """
import os, sys
with open(sys.argv[1], "a") as f:
    f.write(" ".join(os.environ[k] for k in ("SERVICE_RESULT", "EXIT_CODE", "EXIT_STATUS")))
    f.write("\\n")
"""
POLICY = ServicePolicy(
    watchdog_s=0.6,
    start_timeout_s=10.0,
    stop_timeout_s=3.0,
    abort_timeout_s=1.0,
    restart_delay_s=0.1,
    start_limit_interval_s=10.0,
    start_limit_burst=5,
)


class Service:
    def __init__(self, tmp: Path, mode: str = "normal") -> None:
        (tmp / "service.py").write_text(SERVICE)
        (tmp / "recorder.py").write_text(RECORDER)
        self.kick = tmp / "kick"
        self.kick.touch()
        self.records = tmp / "records"
        self.supervisor = Supervisor(
            [sys.executable, str(tmp / "service.py"), mode, str(self.kick)],
            POLICY,
            stop_post=[sys.executable, str(tmp / "recorder.py"), str(self.records)],
        )

    def recorded(self) -> list[str]:
        try:
            return self.records.read_text().splitlines()
        except FileNotFoundError:
            return []


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    s = Service(tmp_path)
    yield s
    s.supervisor.stop(signal.SIGKILL)


def test_a_killed_service_is_restarted_and_its_end_recorded(service: Service) -> None:
    first = service.supervisor.start(10)
    assert service.supervisor.machine.status == "serving"
    killed = time.monotonic()
    os.kill(first.pid, signal.SIGKILL)
    second = service.supervisor.wait_ready(2, 10)
    assert second.pid != first.pid and time.monotonic() - killed < 5
    assert service.recorded() == ["signal killed KILL"]
    assert [e.result for e in service.supervisor.exits] == ["signal"]


def test_a_service_that_stops_kicking_is_aborted_and_restarted(service: Service) -> None:
    first = service.supervisor.start(10)
    time.sleep(1.0)  # kicks keep it alive past its 0.6 s watchdog
    assert service.supervisor.process is first
    service.kick.unlink()
    stopped = time.monotonic()
    service.supervisor.wait_ready(2, 10)
    assert 0.6 <= time.monotonic() - stopped < 5
    assert service.recorded() == ["watchdog killed ABRT"]


def test_a_stopped_process_is_killed_after_the_abort_timeout(service: Service) -> None:
    first = service.supervisor.start(10)
    os.kill(first.pid, signal.SIGSTOP)  # hung: it cannot even take the SIGABRT
    service.supervisor.wait_ready(2, 10)
    # SIGABRT with SIGCONT: a stopped process takes it (systemd does the same).
    assert service.recorded() == ["watchdog killed ABRT"]


def test_a_deliberate_stop_is_recorded_and_not_restarted(service: Service) -> None:
    first = service.supervisor.start(10)
    assert service.supervisor.stop(signal.SIGTERM) == -signal.SIGTERM
    assert service.supervisor.phase is Phase.IDLE
    assert service.supervisor.process is None and first.poll() is not None
    assert service.recorded() == ["success killed TERM"]
    assert service.supervisor.starts == 1


def test_a_start_whose_process_ends_before_ready_fails_at_once(tmp_path: Path) -> None:
    early = Service(tmp_path, "early-exit")
    with pytest.raises(SupervisorError, match=r"ended before READY=1 \(exit-code: exited 2\)"):
        early.supervisor.start(10)
    assert early.supervisor.starts == 1
    assert early.recorded() == ["exit-code exited 2"]


def test_readiness_from_another_process_is_not_the_service_s(tmp_path: Path) -> None:
    other = Service(tmp_path, "child-ready")
    with pytest.raises(SupervisorError, match=r"not ready within 1\.5 s"):
        other.supervisor.start(1.5)


def test_notifications_parse_as_assignments() -> None:
    assert parse_notification(b"READY=1\nSTATUS=a=b c\ngarbage\n") == {
        "READY": "1",
        "STATUS": "a=b c",
    }
