"""The job file and the power file of `groundsw plan`, once read: every key, the defaults, the
three ways to give a deadline, and a refusal naming the job and the key for anything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from groundsw.plan.job_file import DEFAULT_RESULT_OCTETS, parse_deadline, parse_jobs
from groundsw.plan.model import PlanInputError, Redundancy
from groundsw.plan.power_file import parse_limits

START = 1_800_000_000.0
BASE = Path("/data/jobs")


def test_jobs_take_their_keys_and_the_shared_defaults() -> None:
    document = {
        "defaults": {"model": "cnn", "run_s": 10.0, "redundancy": "tmr"},
        "jobs": [
            {"name": "a", "input": "a.npy", "deadline": "+6h", "priority": 7},
            {"name": "b", "input": "/abs/b.npy", "model": "unet", "version": 2, "job_s": 25.0,
             "redundancy": "NONE", "deadline": "2027-01-15T12:00:00Z", "result_octets": 9},
            {"name": "c", "input": "c.npy", "deadline": START + 60},
        ],
    }  # fmt: skip
    a, b, c = parse_jobs(document, BASE, START)
    assert (a.model, a.input, a.priority, a.redundancy) == ("cnn", "/data/jobs/a.npy", 7,
                                                            Redundancy.TMR)  # fmt: skip
    assert a.compute_s == 30.0  # 10 s per run, three runs
    assert a.deadline == START + 6 * 3600
    assert a.result_octets == DEFAULT_RESULT_OCTETS and a.version == 0
    assert (b.model, b.version, b.input, b.compute_s) == ("unet", 2, "/abs/b.npy", 25.0)
    assert b.redundancy is Redundancy.NONE and b.result_octets == 9
    assert b.deadline == 1_800_000_000.0 + 4 * 3600  # 2027-01-15T08:00:00Z is START
    assert c.deadline == START + 60
    # No deadline: by the end of the plan.
    (d,) = parse_jobs({"jobs": [{"name": "d", "model": "m", "input": "d", "job_s": 1}]}, BASE, 0)
    assert d.deadline is None


@pytest.mark.parametrize(
    ("document", "sentence"),
    [
        ({}, "the job file lists no jobs"),
        ({"jobs": [], "extra": 1}, "the job file has unknown key 'extra'"),
        ({"jobs": [{"model": "m"}]}, "job 1 in the job file has no name"),
        ({"jobs": [{"name": "x", "input": "i", "job_s": 1}]}, "job x has no model"),
        ({"jobs": [{"name": "x", "model": "m", "job_s": 1}]}, "job x has no input"),
        ({"jobs": [{"name": "x", "model": "m", "input": "i"}]}, "run_s (seconds per run) or"),
        ({"jobs": [{"name": "x", "model": "m", "input": "i", "run_s": 1, "job_s": 2}]},
         "one of them"),
        ({"jobs": [{"name": "x", "model": "m", "input": "i", "job_s": 0}]},
         "job x: job_s must be above 0 s"),
        ({"jobs": [{"name": "x", "model": "m", "input": "i", "job_s": 1, "priority": 256}]},
         "job x: priority 256 is outside 0 to 255"),
        ({"jobs": [{"name": "x", "model": "m", "input": "i", "job_s": 1, "redundancy": "qmr"}]},
         "redundancy 'qmr' is not none, dmr, tmr or abft"),
        ({"jobs": [{"name": "x", "model": "m", "input": "i", "job_s": 1, "deadline": "soon"}]},
         "job x: the deadline 'soon' is not a time"),
        ({"jobs": [{"name": "x", "model": "m", "input": "i", "job_s": 1, "dedline": 5}]},
         "job x has unknown key 'dedline'"),
        ({"defaults": {"name": "x"}, "jobs": [{"name": "x"}]}, "which no job shares"),
        ({"jobs": ["x"]}, "job 1 in the job file is not a table"),
    ],
)  # fmt: skip
def test_a_bad_job_file_is_refused_naming_the_job_and_the_key(
    document: dict[str, Any], sentence: str
) -> None:
    with pytest.raises(PlanInputError, match=sentence.replace("(", r"\(").replace(")", r"\)")):
        parse_jobs(document, BASE, START)


def test_deadlines_relative_absolute_or_unix() -> None:
    assert parse_deadline("+1h30m", START) == START + 5400
    assert parse_deadline("+90s", START) == START + 90
    assert parse_deadline("2027-01-15T08:00:00+01:00", START) == START - 3600
    assert parse_deadline(START + 1.5, START) == START + 1.5
    for bad in ("6h", "+", "+2027-01-15T08:00:00Z", True, None, float("nan")):
        with pytest.raises(PlanInputError, match="is not a time"):
            parse_deadline(bad, START)


def test_the_power_file_gives_each_model_its_keys_in_their_units() -> None:
    limits = parse_limits(
        {
            "battery": {"capacity_wh": 40, "initial_soc_pct": 66.5},
            "loads": {"solar_w": 80.0, "compute_w": 25},
            "budget": {"floor_soc_pct": 30, "hold_soc_pct": 40, "slow_soc_pct": 60,
                       "slow_duty_pct": 25, "eclipse_priority": 100},
            "thermal": {"duty_pct": 31},
            "link": {"pass_margin_s": 5, "result_overhead_s": 1},
            "plan": {"lead_s": 120, "reserve_pct": 2},
        },
        baud=921600,
        overrides={"initial_soc_pct": 70.0},
    )  # fmt: skip
    p = limits.power
    assert (p.capacity_wh, p.initial_soc_pct, p.solar_w, p.compute_w) == (40, 70, 80, 25)
    assert (p.floor_soc_pct, p.slow_duty, p.eclipse_priority, p.bus_load_w) == (30, 0.25, 100, 10)
    assert limits.thermal.duty == pytest.approx(0.31)
    assert (limits.link.baud, limits.link.pass_margin_s, limits.link.result_overhead_s) == (
        921600, 5, 1,
    )  # fmt: skip
    assert (limits.lead_s, limits.reserve_pct) == (120, 2)
    empty = parse_limits({}, baud=115200)
    assert empty.power.capacity_wh == 80.0 and empty.thermal.duty == 1.0
    assert empty.link.baud == 115200 and empty.lead_s == 60.0


@pytest.mark.parametrize(
    ("document", "sentence"),
    [
        ({"batery": {}}, "the power file has a section [batery]"),
        ({"battery": {"capacity": 4}}, "[battery] in the power file has an unknown key 'capacity'"),
        ({"loads": {"solar_w": "lots"}}, "[loads] solar_w in the power file is not a number"),
        ({"budget": {"hold_priority": 1.5}}, "must be a whole number"),
        ({"budget": {"floor_soc_pct": 40}}, "the power levels must rise: floor 40 %"),
        ({"thermal": {"duty_pct": 0}}, "the thermal duty must be above 0"),
        ({"battery": 3}, "[battery] in the power file is not a table"),
    ],
)
def test_a_bad_power_file_is_refused(document: dict[str, Any], sentence: str) -> None:
    with pytest.raises(PlanInputError) as caught:
        parse_limits(document, baud=115200)
    assert sentence in str(caught.value)
