"""hil-bench run: the first line names the ground port; stopping it stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.hil.conftest import BIN, run_tool


def start_bench(state_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [str(BIN / "hil-bench"), "run", "--state-dir", str(state_dir), "--stats-interval", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("ground-port: "), first + (proc.stderr.read() if proc.stderr else "")
    return proc, first.removeprefix("ground-port: ").strip()


def payload_pids(state_dir: Path) -> list[int]:
    """payload-flight processes serving this state directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"flight" in cmdline and str(state_dir).encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def wait_gone(state_dir: Path, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while payload_pids(state_dir):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_run_prints_ground_port_first_and_stops_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc, ground = start_bench(state)
    try:
        assert os.path.exists(ground)
        ping = run_tool("groundsw", "--port", ground, "ping")
        assert ping.returncode == 0, ping.stderr
        assert payload_pids(state)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "uplink" in out and "Traceback" not in err
    assert wait_gone(state)


def test_no_orphan_payload_when_the_bench_is_killed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc, _ = start_bench(state)
    assert payload_pids(state)
    proc.kill()
    proc.communicate(timeout=20)
    assert wait_gone(state), "payload-flight outlived a SIGKILLed hil-bench"
