"""The thermal simulation: the payload's governor against the steady-state bound of the thermal
limit and against a naive stop-and-go policy, on the bench's RC model in model time."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flight.thermal.governor import Level
from flight.thermal.rc_model import ThermalModelParameters
from tools import thermal_sim
from tools.thermal_sim import Scenario, compare, simulate


def scenario(baseplate_c: float, run_s: float = 0.05, hours: float = 2.0) -> Scenario:
    return Scenario(
        model=ThermalModelParameters(baseplate_c=baseplate_c),
        run_s=run_s,
        duration_s=hours * 3600,
    )


@pytest.mark.parametrize("baseplate_c", [40.0, 50.0, 55.0])
@pytest.mark.parametrize("run_s", [0.05, 1.0])
def test_the_governor_reaches_90_percent_of_the_thermal_limits_rate_and_stays_under_pause(
    baseplate_c: float, run_s: float
) -> None:
    governed, naive = compare(scenario(baseplate_c, run_s))
    thresholds = governed.scenario.thresholds
    assert governed.ratio >= 0.9
    assert governed.ratio >= naive.ratio
    # Held at the throttle threshold: a little overshoot when it first gets there, no pause.
    assert governed.peak_reading_c < thresholds.pause_c
    assert governed.time_at[Level.PAUSED] == 0 and governed.time_at[Level.CRITICAL] == 0
    # Never above the bound by much either: the limit is the limit.
    assert governed.ratio <= 1.1


def test_a_cool_baseplate_needs_no_throttling() -> None:
    outcome = simulate(scenario(20.0, hours=1.0))
    assert outcome.bound_duty == 1.0
    assert outcome.ratio == pytest.approx(1.0, abs=0.01)
    assert outcome.time_at[Level.THROTTLED] == 0


def test_stop_and_go_never_resumes_when_idle_heat_alone_is_within_its_hysteresis() -> None:
    # At a 58 C baseplate the idle payload sits at ~67 C: stop-and-go waits for 67 C forever.
    governed, naive = compare(scenario(58.0))
    assert naive.ratio < 0.5
    assert governed.ratio >= 0.9


def test_the_same_scenario_gives_the_same_outcome() -> None:
    one = simulate(scenario(50.0, hours=0.5))
    two = simulate(scenario(50.0, hours=0.5))
    assert (one.inferences, one.peak_c, one.trace) == (two.inferences, two.peak_c, two.trace)
    other_seed = dataclasses.replace(
        one.scenario, model=dataclasses.replace(one.scenario.model, seed=9)
    )
    assert simulate(other_seed).trace != one.trace


def test_the_report_and_chart_are_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = thermal_sim.main(["--baseplate", "50", "--hours", "0.5", "--out", str(tmp_path / "out")])
    assert code == 0
    text = (tmp_path / "out" / thermal_sim.REPORT_NAME).read_text()
    assert "| 50 | 50 | governor |" in text and "| 50 | 50 | stop-and-go |" in text
    assert (tmp_path / "out" / thermal_sim.CHART_NAME).read_bytes().startswith(b"\x89PNG")
    assert text in capsys.readouterr().out


def test_bad_arguments_get_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        thermal_sim.main(["--hours", "0"])
    assert raised.value.code == 2
    assert "--hours and --run-ms must be above 0" in capsys.readouterr().err
