"""The functional-fault campaign through the real processes: one worker crash among two TMR jobs
(lean, for make test), and every fault kind twice through the command line (slow)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.functional_campaign import REPORT_NAME, RunInfo, make_plan, render_report, run
from tools.functional_trials import available_kinds

pytestmark = pytest.mark.hil


def test_one_worker_crash_among_two_tmr_jobs_is_recovered_and_costs_no_job(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    plan = make_plan(["WORKER_CRASH"], trials=1, seed=1, jobs=2)
    results, stopped = run(plan, tmp_path, jobs=2, watchdog_s=30.0)
    took = time.monotonic() - started
    assert stopped == "" and len(results) == 1
    (trial,) = results
    assert trial.refused == "" and trial.note == "", trial
    assert trial.loss_reason == "CRASHED"
    assert trial.struck_s is not None and trial.back_s is not None
    assert trial.struck_s < trial.back_s
    assert trial.first_job_s is not None and trial.back_s <= trial.first_job_s
    assert (trial.accepted, trial.bit_exact, trial.lost) == (2, 2, 0)
    assert len(trial.pings_ms) == 1  # the link answered while the worker came back
    assert (tmp_path / "payload.log").stat().st_size > 0  # the payload's log, not the console
    text = render_report(RunInfo("c", 1, 1, 2, 30.0, took), ["WORKER_CRASH"], results)
    assert "| WORKER_CRASH | 1 | 1/1 |" in text
    print(f"\nworker crash: compute back after {trial.back_s:.2f} s, whole trial {took:.1f} s")
    assert took < 15


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_fault_kind_twice_through_the_command_line(tmp_path: Path) -> None:
    """Each kind recovers and loses no accepted job (the payload's hang costs its watchdog)."""
    kinds = available_kinds()
    argv = ["--trials", "2", "--seed", "19", "--out", str(tmp_path), "--jobs-per-trial", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "tools.functional_campaign", *argv],
        capture_output=True,
        text=True,
        timeout=850,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert done.stdout.count("\n") == 2 * len(kinds) + 1  # a line per trial, then the report
    text = (tmp_path / REPORT_NAME).read_text()
    for kind in kinds:
        row = next(line for line in text.splitlines() if line.startswith(f"| {kind} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        # Kind, trials, recovered, three times, jobs accepted, jobs lost, bit-exact, ...
        assert cells[1:3] == ["2", "2/2"], row
        assert cells[7] == "0" and cells[8] == "4/4", row
    print("\n" + text)
