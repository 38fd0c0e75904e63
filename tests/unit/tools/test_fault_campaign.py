"""The fault campaign: classification rules, trials on the real payload code, the CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flight.jobs.redundancy import Redundancy
from flight.protection.faults import FaultModel
from tools import fault_campaign
from tools.fault_campaign import (
    SCRUB_ONLY,
    STORE_FILE,
    STORE_READ,
    STORE_REOPEN,
    CampaignResult,
    Cell,
    JobStoreTrials,
    Outcome,
    Payload,
    Target,
    TrialResult,
    Uplink,
    classify,
    classify_frame,
    same_outputs,
    sdc_upper_bound,
)
from tools.model_gen import mlp, model_bytes, random_input

REPO = Path(__file__).resolve().parents[3]
TINY_WIDTHS = (16, 32, 8)


# --- classification rules --------------------------------------------------------------------


@pytest.mark.parametrize("detected", [False, True])
def test_a_wrong_delivered_result_is_sdc_never_masked_even_when_a_check_fired(
    detected: bool,
) -> None:
    assert classify(delivered=True, correct=False, detected=detected) is Outcome.SDC


@pytest.mark.parametrize("correct", [False, True])
def test_nothing_delivered_is_detected_and_uncorrectable(correct: bool) -> None:
    assert classify(delivered=False, correct=correct, detected=True) is Outcome.UNCORRECTABLE


def test_a_right_result_is_masked_only_when_no_check_fired() -> None:
    assert classify(delivered=True, correct=True, detected=False) is Outcome.MASKED
    assert classify(delivered=True, correct=True, detected=True) is Outcome.CORRECTED


def test_frames_rejected_corrected_identical_or_altered() -> None:
    sent = [b"\x18\x64packet"]
    assert classify_frame([], sent, corrected=0) is Outcome.CORRECTED  # COP-1 retransmits
    assert classify_frame(sent, sent, corrected=2) is Outcome.CORRECTED
    assert classify_frame(sent, sent, corrected=0) is Outcome.MASKED
    assert classify_frame([b"\x18\x64packes"], sent, corrected=0) is Outcome.SDC
    assert classify_frame([*sent, *sent], sent, corrected=0) is Outcome.SDC


def test_outputs_compare_bit_for_bit() -> None:
    zero = {"y": np.zeros(3, np.float32)}
    assert same_outputs(zero, {"y": np.zeros(3, np.float32)})
    assert not same_outputs(zero, {"y": -np.zeros(3, np.float32)})  # -0.0 == 0.0 as values
    assert not same_outputs(zero, {"y": np.zeros(3, np.float64)})
    assert not same_outputs(zero, {"z": np.zeros(3, np.float32)})
    nan = {"y": np.full(2, np.nan, np.float32)}
    assert same_outputs(nan, {"y": np.full(2, np.nan, np.float32)})


def _binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize(("sdc", "trials"), [(0, 10_000), (1, 10), (3, 200), (40, 100)])
def test_sdc_upper_bound_leaves_5_percent_below_it(sdc: int, trials: int) -> None:
    bound = sdc_upper_bound(sdc, trials)
    assert sdc / trials < bound < 1
    assert _binomial_cdf(sdc, trials, bound) == pytest.approx(0.05, rel=1e-6)


def test_sdc_upper_bound_edges() -> None:
    assert sdc_upper_bound(0, 10_000) == pytest.approx(3 / 10_000, rel=0.01)  # the 3/N rule
    assert sdc_upper_bound(5, 5) == 1.0
    with pytest.raises(ValueError, match="sdc <= trials"):
        sdc_upper_bound(6, 5)


def cell(target: Target, fault: FaultModel, protection: str, **counts: int) -> Cell:
    made = Cell(target, fault, protection)
    for name, count in counts.items():
        for _ in range(count):
            made.add(TrialResult(Outcome[name.upper()], flag=name != "sdc"))
    return made


def result_of(cells: list[Cell]) -> CampaignResult:
    return CampaignResult(1, 10_000, fault_campaign.MODELS["mlp"], "", cells, 0.0)


def tmr_cells(sdc_in_one: int = 0, trials: int = 10_000) -> list[Cell]:
    cells = []
    for target in (Target.WEIGHTS, Target.OUTPUTS):
        for fault in FaultModel:
            sdc = sdc_in_one if (target, fault) == (Target.OUTPUTS, FaultModel.ROW) else 0
            cells.append(cell(target, fault, "TMR", corrected=trials - sdc, sdc=sdc))
    return cells


def test_the_tmr_target_passes_only_with_no_sdc_in_enough_trials() -> None:
    first, second = fault_campaign.verdicts(result_of(tmr_cells()))
    assert first.status == "PASS"
    assert second.status == "PASS" and "40000/40000" in second.measured
    assert fault_campaign.verdicts(result_of(tmr_cells(sdc_in_one=1)))[0].status == "FAIL"
    short = fault_campaign.verdicts(result_of(tmr_cells(trials=9_999)))[0]
    assert short.status.startswith("not shown")


def test_a_weight_fault_no_scrub_pass_found_fails_the_scrub_target() -> None:
    cells = [*tmr_cells(), cell(Target.WEIGHTS, FaultModel.BIT, "NONE", masked=9, sdc=1)]
    # The SDC trial's flag is False here: its fault was not found by the scrub pass.
    assert fault_campaign.verdicts(result_of(cells))[1].status == "FAIL"


def test_targets_not_run_are_not_measured() -> None:
    cells = [cell(Target.UPLINK, FaultModel.BIT, "BCH", corrected=3)]
    assert [v.status for v in fault_campaign.verdicts(result_of(cells))] == ["not measured"] * 2


# --- trials on the real payload --------------------------------------------------------------


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Payload]:
    model = mlp(widths=TINY_WIDTHS)
    built = Payload(tmp_path_factory.mktemp("payload"), model_bytes(model), random_input(model))
    with fault_campaign.quiet_payload_logs():
        yield built
    built.close()


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("fault", list(FaultModel))
def test_an_output_fault_without_redundancy_is_sdc(payload: Payload, fault: FaultModel) -> None:
    for seed in range(5):
        assert payload.output_trial(fault, "NONE", rng(seed)).outcome is Outcome.SDC


@pytest.mark.parametrize("mode", ["DMR", "TMR"])
@pytest.mark.parametrize("fault", list(FaultModel))
def test_an_output_fault_is_outvoted(payload: Payload, mode: str, fault: FaultModel) -> None:
    for seed in range(5):
        assert payload.output_trial(fault, mode, rng(seed)).outcome is Outcome.CORRECTED


@pytest.mark.parametrize("mode", ["DMR", "TMR", "ABFT"])
@pytest.mark.parametrize("fault", list(FaultModel))
def test_a_weight_fault_under_a_checked_mode_is_corrected_and_leaves_clean_weights(
    payload: Payload, mode: str, fault: FaultModel
) -> None:
    for seed in range(5):
        result = payload.weight_trial(fault, mode, rng(seed))
        assert result == TrialResult(Outcome.CORRECTED, flag=True)
        assert payload.weights_pristine()


def test_the_scrub_pass_alone_finds_and_repairs_a_weight_fault(payload: Payload) -> None:
    for seed in range(5):
        result = payload.weight_trial(FaultModel.ROW, SCRUB_ONLY, rng(seed))
        assert result == TrialResult(Outcome.CORRECTED, flag=True)
        assert payload.weights_pristine()


def test_weight_faults_without_redundancy_are_masked_or_sdc_and_found_by_the_scrub(
    payload: Payload,
) -> None:
    outcomes = set()
    for seed in range(30):
        result = payload.weight_trial(FaultModel.VALUE, "NONE", rng(seed))
        outcomes.add(result.outcome)
        assert result.flag  # the scrub pass after the job found it
        assert payload.weights_pristine()
    assert outcomes <= {Outcome.MASKED, Outcome.SDC}
    assert Outcome.SDC in outcomes


def test_a_wrong_result_the_checks_let_through_is_counted_sdc(
    payload: Payload, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the weight check disabled, a changed output bias goes straight into the result.
    monkeypatch.setattr(payload.guard, "weights_clean_since", lambda *args: True)
    bias = payload.weights().arrays["fc2.bias"]

    def strike(runs: int, feeds: dict[str, np.ndarray]) -> None:
        if runs == 0:
            bias[0] += 1.0

    try:
        outputs = payload.run_job(Redundancy.TMR, strike)
    finally:
        payload.restore_weights()
    assert outputs is not None
    assert fault_campaign.job_outcome(outputs, payload.golden, detected=False) is Outcome.SDC


@pytest.mark.parametrize("fault", list(FaultModel))
def test_an_input_fault_is_found_by_its_crc_and_the_job_rerun(
    payload: Payload, fault: FaultModel
) -> None:
    for mode in ("NONE", "TMR"):
        result = payload.input_trial(fault, mode, rng(3))
        assert result.outcome is Outcome.CORRECTED


def test_a_corrupt_result_file_is_refused_and_restored(payload: Payload) -> None:
    for seed in range(3):
        result = payload.result_file_trial(FaultModel.BIT, "SHA-256", rng(seed))
        assert result.outcome is Outcome.UNCORRECTABLE
    name = fault_campaign.result_file_name(fault_campaign.RESULT_JOB_ID, 1)
    assert payload.files.intact(name)


def test_uplink_single_bits_are_corrected_by_bch_and_trials_repeat() -> None:
    uplink = Uplink()
    results = [uplink.trial(FaultModel.BIT, "BCH", rng(seed)) for seed in range(20)]
    assert all(r.outcome in (Outcome.CORRECTED, Outcome.MASKED) for r in results)
    assert results == [uplink.trial(FaultModel.BIT, "BCH", rng(seed)) for seed in range(20)]


@pytest.fixture(scope="module")
def job_store(tmp_path_factory: pytest.TempPathFactory) -> JobStoreTrials:
    return JobStoreTrials(tmp_path_factory.mktemp("jobstore"))


@pytest.mark.parametrize("protection", [STORE_READ, STORE_REOPEN])
@pytest.mark.parametrize("fault", list(FaultModel))
def test_a_record_fault_is_repaired_from_the_record_copy_and_crc(
    job_store: JobStoreTrials, protection: str, fault: FaultModel
) -> None:
    for seed in range(3):
        assert job_store.trial(fault, protection, rng(seed)).outcome is Outcome.CORRECTED


def test_file_faults_in_the_job_store_are_masked_or_detected(job_store: JobStoreTrials) -> None:
    outcomes = [job_store.trial(FaultModel.BIT, STORE_FILE, rng(s)).outcome for s in range(20)]
    assert Outcome.SDC not in outcomes
    assert Outcome.MASKED in outcomes  # most of a small store's file is free space


def test_abft_coverage_comes_from_its_own_functions() -> None:
    model = mlp(widths=TINY_WIDTHS)
    feeds = {model.graph.input[0].name: random_input(model)}
    found = fault_campaign.run_abft(model, feeds, trials=5, seed=1)
    assert found.unavailable == ""
    assert [(r.fault, r.kind) for r in found.rows] == [
        (fault, kind) for fault in FaultModel for kind in fault_campaign.ABFT_KINDS
    ]
    assert all(r.trials == 5 and 0.0 <= r.coverage <= 1.0 for r in found.rows)
    assert found.threshold > 0 and found.layers == 2


# --- the command line ------------------------------------------------------------------------


def tables(report: Path) -> list[str]:
    return [line for line in report.read_text().splitlines() if line.startswith("|")]


def test_a_tiny_campaign_writes_report_and_chart_and_repeats_its_tables(tmp_path: Path) -> None:
    args = ["--trials", "2", "--seed", "7", "--model", "mlp"]
    assert fault_campaign.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert fault_campaign.main([*args, "--out", str(tmp_path / "b")]) == 0
    report = tmp_path / "a" / "fault_campaign.md"
    chart = tmp_path / "a" / "fault_campaign.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report.read_text()
    for target in Target:
        assert f"## {fault_campaign.TARGET_TITLES[target]}" in text
    assert "## ABFT next to TMR" in text
    assert "Seed: 7" in text and "fault_campaign.png" in text
    assert tables(report) == tables(tmp_path / "b" / "fault_campaign.md")
    # 2 trials per cell cannot show 0 SDC in 10,000.
    assert "not shown (fewer than 10,000 trials per cell)" in text


def test_only_runs_the_chosen_targets(tmp_path: Path) -> None:
    code = fault_campaign.main(
        ["--trials", "3", "--model", "mlp", "--only", "uplink", "--out", str(tmp_path)]
    )
    assert code == 0
    text = (tmp_path / "fault_campaign.md").read_text()
    assert "## Uplink frames" in text
    assert "## Weight buffers" not in text
    assert "weights and outputs were not both run" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--trials", "many"],
        ["--trials", "0"],
        ["--seed", "-1"],
        ["--model", "resnet"],
        ["--only", "cache"],
        ["--frobnicate"],
        [],  # --out missing
    ],
)
def test_a_bad_flag_is_one_sentence_and_status_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = [] if not argv else ["--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        fault_campaign.main([*argv, *out])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fault_campaign: ") and err.endswith(".\n")
    assert not list(tmp_path.iterdir())


def test_the_module_reports_a_bad_flag_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tools.fault_campaign", "--trials", "x", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
