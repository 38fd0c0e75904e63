"""The functional-fault campaign without a payload: its seeded plan, its statistics, its report
on fixed data, and the command line's answer to bad flags (the trials themselves run in
tests/hil/test_functional_campaign.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tools import functional_campaign as campaign
from tools.functional_campaign import (
    RunInfo,
    Spread,
    make_plan,
    render_report,
    spread,
    summarise,
    tally,
)
from tools.functional_trials import KINDS, D, TrialPlan, TrialResult, available_kinds

WORKER = ["WORKER_CRASH", "WORKER_HANG"]


# --- the plan ------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_sequence_of_faults() -> None:
    assert make_plan(WORKER, 5, seed=7, jobs=3) == make_plan(WORKER, 5, seed=7, jobs=3)
    assert make_plan(WORKER, 5, seed=7, jobs=3) != make_plan(WORKER, 5, seed=8, jobs=3)


def test_every_kind_gets_its_trials_numbered_in_order_with_a_job_after_the_fault() -> None:
    plan = make_plan(WORKER, 6, seed=1, jobs=2)
    assert Counter(t.kind for t in plan) == {"WORKER_CRASH": 6, "WORKER_HANG": 6}
    assert [t.number for t in plan] == list(range(1, 13))
    assert {t.jobs_before for t in plan} <= {0, 1}  # at least one of 2 jobs after the fault
    assert all(0 <= t.inject_seed < 2**32 for t in plan)


def test_the_kinds_table_names_fault_targets_and_events_of_the_dictionary() -> None:
    targets = D.enums["FaultTarget"].values
    for kind in KINDS:
        for event in (kind.struck, kind.back):
            if event is not None:
                D.event(event)  # raises when the dictionary has no such event
        assert kind.restarts_payload == (kind.struck is None)
    assert available_kinds() == [k.target for k in KINDS if k.target in targets]


# --- statistics ----------------------------------------------------------------------------------


def test_spread_is_median_and_maximum_of_what_was_measured() -> None:
    assert spread([3.0, None, 1.0, 2.0, 10.0]) == Spread(2.5, 10.0, 4)
    assert spread([None, None]) == Spread(None, None, 0)
    assert Spread(1.234, 5.678, 2).text(digits=2) == "1.23 / 5.68"
    assert Spread(0.0312, 0.05, 2).text(scale=1000, digits=0) == "31 / 50"
    assert Spread(None, None, 0).text() == "—"


def test_tally_counts_reasons_in_order_of_first_appearance() -> None:
    assert tally(["CRASH", "", "WATCHDOG", "CRASH"]) == "CRASH x2, WATCHDOG x1"
    assert tally(["", ""]) == "—"


def result(number: int, kind: str, **values: Any) -> TrialResult:
    plan = TrialPlan(number, kind, inject_seed=100 + number, jobs_before=1)
    return TrialResult(plan, **values)


RESULTS = [
    result(1, "WORKER_CRASH", jobs_before=1, struck_s=0.1, back_s=1.2, first_job_s=1.3,
           pings_ms=(30.0,), accepted=3, succeeded=3, bit_exact=3, requeued=1,
           loss_reason="CRASHED", restart_delay_ms=100),
    result(2, "PAYLOAD_CRASH", jobs_before=3, struck_s=0.2, back_s=3.0, first_job_s=5.0,
           pings_ms=(40.0,), accepted=3, succeeded=3, bit_exact=3, reset_reason="CRASH"),
    result(3, "WORKER_CRASH", jobs_before=0, struck_s=0.3, back_s=None, accepted=3,
           succeeded=2, bit_exact=1, loss_reason="CRASHED", restart_delay_ms=200,
           note="expected event WORKER_STARTED within 60 s; received: nothing"),
    result(4, "WORKER_CRASH", refused="TEST_COMMANDS_DISABLED", accepted=3, succeeded=3,
           bit_exact=3),
]  # fmt: skip


def test_summary_counts_recoveries_and_lost_jobs_and_leaves_refused_trials_out_of_times() -> None:
    s = summarise("WORKER_CRASH", RESULTS)
    assert (s.trials, s.injected, s.recovered) == (3, 2, 1)
    assert s.struck == Spread(0.2, 0.3, 2) and s.back == Spread(1.2, 1.2, 1)
    # Trial 3: one job failed, one succeeded with a wrong result: both lost.
    assert (s.accepted, s.lost, s.bit_exact, s.requeued) == (9, 2, 7, 1)
    assert s.ping_ms == Spread(30.0, 30.0, 1)
    assert s.restart_delay_ms == Spread(150.0, 200.0, 2)
    assert s.reasons == "CRASHED x2"
    assert summarise("PAYLOAD_CRASH", RESULTS).reasons == "CRASH x1"


def test_the_report_has_the_run_a_row_per_kind_and_a_row_per_trial() -> None:
    info = RunInfo(
        command="python -m tools.functional_campaign --trials 3 --seed 9 --out x",
        seed=9,
        trials=3,
        jobs=3,
        watchdog_s=30.0,
        seconds=61.4,
    )
    text = render_report(info, ["WORKER_CRASH", "PAYLOAD_CRASH"], RESULTS)
    assert "Made by `python -m tools.functional_campaign --trials 3 --seed 9 --out x`." in text
    assert "- Seed: 9; trials per kind: 3 (4 run in all); 3 TMR jobs per trial." in text
    assert "- Run time: 61 s." in text
    assert "Stopped early" not in text
    assert (
        "| WORKER_CRASH | 3 | 1/2 (1 refused) | 0.20 / 0.30 | 1.20 / 1.20 | 1.30 / 1.30 | 9 | 2 "
        "| 7/9 | 1 | 30 / 30 | 150 / 200 | CRASHED x2 |"
    ) in text
    assert (
        "| PAYLOAD_CRASH | 1 | 1/1 | 0.20 / 0.20 | 3.00 / 3.00 | 5.00 / 5.00 | 3 | 0 | 3/3 | 0 "
        "| 40 / 40 | — | CRASH x1 |"
    ) in text
    assert "PAYLOAD_CRASH: the process's end (the bench's supervisor) → PAYLOAD_STARTED" in text
    assert "| 2 | PAYLOAD_CRASH | 102 | 3 | 0.20 | 3.00 | 5.00 | 3 | 0 | CRASH |  |" in text
    assert "| 3 | WORKER_CRASH | 103 | 0 | 0.30 | — | — | 3 | 2 | CRASHED | expected" in text
    assert "| 4 | WORKER_CRASH | 104 | 0 | — | — | — | 3 | 0 | — | refused: TEST_" in text


def test_a_campaign_stopped_early_says_why() -> None:
    info = RunInfo("c", 1, 1, 1, 30.0, 1.0, stopped="the bench did not start: no pty")
    assert "- Stopped early: the bench did not start: no pty" in render_report(info, [], [])


# --- the command line ----------------------------------------------------------------------------

GOOD = ["--trials", "1", "--seed", "1"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--seed", "1", "--out", "{out}"], "the following arguments are required: --trials"),
        (["--trials", "0", "--seed", "1", "--out", "{out}"], "--trials: expects a whole number"),
        (["--trials", "two", "--seed", "1", "--out", "{out}"], "found 'two'"),
        (["--trials", "1", "--seed", "-1", "--out", "{out}"], "--seed: expects a whole number"),
        ([*GOOD, "--out", "{out}", "--jobs-per-trial", "0"], "--jobs-per-trial: expects"),
        ([*GOOD, "--out", "{out}", "--watchdog", "0.5"], "--watchdog: expects seconds"),
        ([*GOOD, "--out", "{out}", "--only", "BIT_FLIP"], "--only expects fault kinds among"),
        ([*GOOD, "--out", "{out}", "--only"], "--only: expected at least one argument"),
        ([*GOOD, "--out", "{file}"], "--out expects a directory, found a file"),
        ([*GOOD, "--out", "{out}", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_every_bad_flag_gives_one_plain_sentence_and_exit_2(
    argv: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    argv = [a.format(out=tmp_path / "out", file=a_file) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        campaign.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("functional_campaign: ") and err.endswith(".\n"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert words in err
    assert not (tmp_path / "out").exists()  # nothing made for a refused command line


def test_a_kind_the_dictionary_does_not_have_yet_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(campaign, "available_kinds", lambda: ["WORKER_CRASH"])
    with pytest.raises(SystemExit) as exit_:
        campaign.main([*GOOD, "--out", str(tmp_path), "--only", "DISK_FULL"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "functional_campaign: --only DISK_FULL: this payload's dictionary has no such "
        "FaultTarget yet.\n"
    )
