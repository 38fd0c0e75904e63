"""hil-bench run: the first line names the ground port; stopping it stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hil.bench import Bench
from tests.harness import BIN, run_tool


def start_bench(state_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    """`hil-bench run` started; its ground port and its development key file, as printed."""
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
    for line in proc.stdout:
        if line.startswith("uplink-keys: "):
            keys = line.removeprefix("uplink-keys: ").split()[0]
            break
    else:
        raise AssertionError("hil-bench run printed no uplink-keys line")
    return proc, first.removeprefix("ground-port: ").strip(), keys


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
    proc, ground, keys = start_bench(state)
    try:
        assert os.path.exists(ground)
        ping = run_tool("groundsw", "--port", ground, "--keys", keys, "ping")
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
    proc, _, _ = start_bench(state)
    assert payload_pids(state)
    proc.kill()
    proc.communicate(timeout=20)
    assert wait_gone(state), "payload-flight outlived a SIGKILLed hil-bench"


def test_line_faults_on_the_command_line(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            str(BIN / "hil-bench"),
            "run",
            "--state-dir",
            str(tmp_path / "s"),
            "--ber",
            "1e-5/1e-4",
            "--latency",
            "20",
            "--seed",
            "9",
            "--stats-interval",
            "0.5",
            "--baseplate",
            "45",
            "--time-scale",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(8)]
        # The payload runs on the bench's thermal model with these settings.
        bench_config = (tmp_path / "s-bench.toml").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert lines[3] == (
        "line: 115200 baud, seed 9; uplink BER 1e-05, latency 20 ms; "
        "downlink BER 0.0001, latency 20 ms\n"
    )
    assert lines[4] == "TM coding: rs\n"
    assert lines[5] == "thermal model: baseplate 45 C, 10x real time\n"
    keys = tmp_path / "s-keys.toml"
    assert lines[6] == f"uplink-keys: {keys} (export GROUNDSW_KEYS={keys})\n"
    assert lines[7].startswith("t=")
    assert "baseplate_c = 45.0" in bench_config and "time_scale = 10.0" in bench_config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ber", "2"], "hil-bench: ber 2.0 is not a probability in [0, 1)"),
        (
            ["--burst", "1e-5"],
            "hil-bench: --burst '1e-5': give RATE:BITS such as 1e-6:64, or UP/DOWN to set each way",
        ),
        (["--cut", "5"], "hil-bench: --cut '5': give AT:SECONDS, e.g. 30:5"),
        (
            ["--flight-port", "/dev/no-such-port"],
            "hil-bench: cannot open serial port /dev/no-such-port: no such device",
        ),
        (
            ["--flight-port", "/dev/null", "--ber", "1e-5"],
            "hil-bench: --ber needs the emulated link; it cannot go with --flight-port",
        ),
        (
            ["--flight-port", "/dev/null", "--time-scale", "10"],
            "hil-bench: --time-scale needs the emulated link; it cannot go with --flight-port",
        ),
        (["--time-scale", "0"], "hil-bench: --time-scale must be above 0"),
        (["--baseplate", "hot"], None),
    ],
)
def test_bad_options_are_one_sentence(args: list[str], message: str | None) -> None:
    result = run_tool("hil-bench", "run", *args)
    assert result.returncode == 2
    if message is None:  # argparse's own: its usage, then one sentence
        assert result.stderr.strip().splitlines()[-1].startswith("hil-bench run: error: ")
        assert "Traceback" not in result.stderr
    else:
        assert result.stderr.strip() == message


def test_real_board_mode_points_the_ground_at_the_device(tmp_path: Path) -> None:
    # A bench stands in for the real board: its ground end is "the board's serial port".
    with Bench(tmp_path / "board", flight_log=tmp_path / "board.log") as board:
        proc = subprocess.Popen(
            [str(BIN / "hil-bench"), "run", "--flight-port", board.ground_port],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == f"ground-port: {board.ground_port}\n"
            assert board.key_file is not None
            keys = ["--keys", str(board.key_file)]  # the board's key, as provisioned
            ping = run_tool("groundsw", "--port", board.ground_port, *keys, "ping")
            assert ping.returncode == 0, ping.stderr
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=20)
        assert proc.returncode == 0


def test_the_bench_and_its_payload_die_with_the_benchs_parent(tmp_path: Path) -> None:
    state = tmp_path / "state"
    parent = subprocess.Popen(
        ["/bin/sh", "-c", f"{BIN / 'hil-bench'} run --state-dir {state} >/dev/null 2>&1 & wait"],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not payload_pids(state):
        assert time.monotonic() < deadline, "payload never started"
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    assert wait_gone(state), "payload-flight outlived the bench's parent"
