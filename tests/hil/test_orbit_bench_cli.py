"""`hil-bench run --tle FILE --station LAT,LON --time-scale K`: the bench flies the orbit, the
link up only during passes, each AOS, LOS and change of sunlight printed as it happens; a bad
flag is one sentence and exit code 2."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orbit import OrbitTimeline, parse_station, read_tle
from tests.harness import BIN, run_tool

TLE_PATH = Path(__file__).resolve().parents[2] / "orbit" / "data" / "aipayload-1.tle"
TLE = read_tle(TLE_PATH)


def test_a_bad_orbit_flag_is_one_sentence_and_exit_2() -> None:
    # Each mistake's sentence: tests/unit/hil/test_cli_orbit.py.
    done = run_tool("hil-bench", "run", "--tle", str(TLE_PATH), "--station", "91,11.6", timeout=30)
    assert done.returncode == 2, done.stderr
    assert "latitude from -90 to 90" in done.stderr and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_run_flies_the_orbit_and_prints_each_pass_as_it_happens(tmp_path: Path) -> None:
    station = parse_station("48.1,11.6,550", 5.0)
    first = OrbitTimeline(TLE, station, TLE.epoch).next_pass(TLE.epoch)
    assert first is not None
    # AOS 900 s of orbit after the start: 3 s at 300x, once the bench is up and printing.
    start = dt.datetime.fromtimestamp(first.aos - 900.0, dt.UTC).isoformat()
    proc = subprocess.Popen(
        [str(BIN / "hil-bench"), "run", "--state-dir", str(tmp_path / "state"),
         "--tle", str(TLE_PATH), "--station", "48.1,11.6,550", "--min-elevation", "5",
         "--time-scale", "300", "--start", start, "--stats-interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[tuple[float, str]] = []
    try:
        first_line = proc.stdout.readline()
        assert first_line.startswith("ground-port: "), first_line
        deadline = time.monotonic() + 20
        for line in proc.stdout:
            lines.append((time.monotonic(), line.strip()))
            if "lost out of passes" in line and any("LOS" in text for _, text in lines):
                break
            assert time.monotonic() < deadline, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    texts = [text for _, text in lines]
    assert any(t.startswith("orbit: AIPAYLOAD-1 over 48.1000N 11.6000E") for t in texts), texts
    aos = next(i for i, t in enumerate(texts) if t.startswith("pass 1: AOS"))
    los = next(i for i, t in enumerate(texts) if t.startswith("pass 1: LOS"))
    assert aos < los
    assert "max elevation 15.8 deg, 7.4 min, 1.5 s on the bench" in texts[aos]
    assert "orbit 2026-11-30T23:12:18" in texts[aos]  # the pass's AOS in orbit time
    # Printed as it happens: LOS 1.5 s after AOS.
    assert 1.2 < lines[los][0] - lines[aos][0] < 2.0
    # The mapping a planner aims at, ready to paste: the AOS printed at the bench time it gives.
    (plan,) = [t for t in texts if t.startswith("plan for it with: groundsw plan")]
    words = plan.split()
    orbit_start = float(words[words.index("--orbit-start") + 1])
    bench_start = float(words[words.index("--bench-start") + 1])
    assert words[words.index("--time-scale") + 1] == "300"
    assert orbit_start == dt.datetime.fromisoformat(start).timestamp()
    printed_aos = dt.datetime.fromisoformat(texts[aos].split("bench ")[1].rstrip("Z") + "+00:00")
    assert printed_aos.timestamp() == pytest.approx(
        bench_start + (first.aos - orbit_start) / 300, abs=0.002
    )
