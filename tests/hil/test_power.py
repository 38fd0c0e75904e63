"""The power budget through the link, on the bench's battery model: in eclipse at a low state of
charge a low-priority job waits queued while high-priority ones run, until their estimated
energy would reach the floor; sunlight (the file the bench writes) charges the battery and every
job completes; the events and the POWER_STATUS housekeeping say so throughout, and the battery
never goes below the floor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flight.power.sunlight import write_intervals
from hil.bench import Bench
from hil.testapi import GroundTestApi
from spacelink.spacepacket import PusTm
from telemetry_defs.model import CodecError
from tests.harness import open_test_api
from tests.hil.onboard import D, job_report, npy, register, submit, upload
from tools.model_gen import model_bytes, slow_model

pytestmark = pytest.mark.hil

LEVEL = D.enums["PowerLevel"].values
REASON = D.enums["PowerHoldReason"].values
SUNLIGHT = D.enums["Sunlight"].values
JOB_STATE = D.enums["JobState"].values

FLOOR_SOC = D.parameter("POWER_FLOOR_SOC").default  # 20 %
# A battery of 900 J whose only load is the compute: what drains it is what the budget lets run.
# A TMR job of the test's model computes for a few tenths of a second at 40 W, about 1 % of it;
# the budget reckons a job at its measured time plus 0.7 s of compute the last reading may not
# show yet (3 % of the battery). Starting at 27 %, in LOW (below 35 %): the first job fits above
# the floor (its time reckoned at 3 x 0.2 s before it ran), at most five do, then the rest wait.
CONFIG = """\
[power]
source = "model"
poll_interval_s = 0.1
battery_capacity_wh = 0.25
compute_power_w = 40.0
unknown_run_s = 0.2
reading_lag_s = 0.7
[power_model]
initial_soc_pct = 27.0
solar_w = 100.0
bus_load_w = 0.0
payload_idle_w = 0.0
sunlight = "file"
sunlight_file = "{sunlight}"
"""
HIGH_JOBS = 6


def settled(api: GroundTestApi, timeout: float = 30) -> dict[str, Any]:
    """The job and power values once no job runs and the power budget holds every queued one
    (in eclipse with no other load the charge then stays as it is: the hold for good)."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        values = api.get_parameters("JOBS_RUNNING", "JOBS_QUEUED", "JOBS_POWER_HELD")
        steady = values["JOBS_RUNNING"] == 0 and values["JOBS_POWER_HELD"] == values["JOBS_QUEUED"]
        seen = [*seen, values] if steady else []
        if len(seen) == 3:  # the same over a second or so: not a job between two others
            return values
        time.sleep(0.3)
    raise AssertionError(f"the queue did not settle under the power hold: {seen}")


def power_status(api: GroundTestApi, check: Any, since: float, timeout: float = 20) -> Any:
    """The first POWER_STATUS report after `since` whose parameters satisfy `check`."""
    found: list[dict[str, Any]] = []

    def match(tm: PusTm) -> bool:
        if (tm.service, tm.subtype) != (3, 25):
            return False
        try:
            decoded = D.decode_tm(tm.service, tm.subtype, tm.source_data)
        except CodecError:
            return False
        if decoded.name != "POWER_STATUS" or not check(decoded.parameters):
            return False
        found.append(decoded.parameters)
        return True

    api.await_tm(match, timeout=timeout, since=since, description="a matching POWER_STATUS")
    return found[-1]


def test_low_priority_waits_in_eclipse_high_priority_runs_above_the_floor_then_all_complete(
    make_bench: Any, tmp_path: Path
) -> None:
    sunlight = tmp_path / "sunlight.txt"  # absent: eclipse
    config = tmp_path / "power.toml"
    config.write_text(CONFIG.format(sunlight=sunlight))
    bench: Bench = make_bench(baud=921600, flight_args=["--config", str(config)])
    with open_test_api(bench.ground_port, bench.baud) as api:
        t0 = time.monotonic()
        api.command_and_assert("HK_SET_INTERVAL", sid=D.housekeeping["POWER_STATUS"].sid,
                               interval_ms=250)  # fmt: skip
        now = power_status(api, lambda p: True, t0)
        assert now["POWER_LEVEL"] == LEVEL["LOW"] and now["SUNLIGHT"] == SUNLIGHT["ECLIPSE"]
        assert now["BATTERY_SOC"] == pytest.approx(27.0, abs=0.1)
        register(api, "busy", model_bytes(slow_model(layers=16, size=192)))
        upload(api, "scale.npy", npy(np.array([[1.0]], dtype=np.float32)))

        # A low-priority job: held by priority, queued.
        since = time.monotonic()
        low, low_record = submit(api, model="busy", input="scale.npy", priority=10)
        held = api.await_named_event("POWER_JOBS_HELD", since=since, timeout=20).values
        assert (held["job_id"], held["reason"]) == (low, REASON["LOW"])
        assert held["min_priority"] == D.parameter("POWER_HOLD_PRIORITY").default

        # High-priority jobs run, ahead of it, until the next one's energy would reach the floor.
        since = time.monotonic()
        high = [
            submit(api, model="busy", input="scale.npy", priority=200, redundancy="TMR")
            for _ in range(HIGH_JOBS)
        ]
        resumed = api.await_named_event("POWER_JOBS_RESUMED", since=since, timeout=20).values
        assert resumed["job_id"] == high[0][0]
        energy = api.await_named_event(
            "POWER_JOBS_HELD", lambda v: v["reason"] == REASON["ENERGY"], since=since, timeout=30
        ).values
        assert energy["job_id"] in [job_id for job_id, _ in high[1:]]
        jobs = settled(api)
        ran = [j for j, _ in high if job_report(api, j)["state"] == JOB_STATE["SUCCEEDED"]]
        assert 1 <= len(ran) < HIGH_JOBS
        waiting = HIGH_JOBS - len(ran) + 1  # the low job too: nothing passes a held best job
        assert jobs["JOBS_QUEUED"] == waiting
        status = power_status(api, lambda p: p["JOBS_POWER_HELD"] == waiting, time.monotonic())
        assert status["POWER_LEVEL"] == LEVEL["LOW"] and status["POWER_MIN_PRIORITY"] == 128
        assert FLOOR_SOC < status["BATTERY_SOC"] < 27.0
        assert job_report(api, low)["state"] == JOB_STATE["QUEUED"]
        assert job_report(api, low)["attempts"] == 0

        # Sunlight: the battery charges, the held high-priority jobs run first, the low one
        # once the charge is above the hold level.
        since = time.monotonic()
        write_intervals(sunlight, [(time.time() - 1.0, time.time() + 3600.0)])
        api.await_named_event("ECLIPSE_LEFT", since=since, timeout=20)
        resumed = api.await_named_event("POWER_JOBS_RESUMED", since=since, timeout=20).values
        assert resumed["job_id"] == min(j for j, _ in high if j not in ran)  # the best queued
        assert resumed["held"] > 0
        slowed = api.await_named_event("POWER_SLOWED", since=since, timeout=30).values
        assert slowed["previous"] == LEVEL["LOW"] and slowed["soc"] >= 37.0  # 35 % + hysteresis
        for job_id, record in [*high, (low, low_record)]:
            assert record.finished.wait(60), f"job {job_id} did not end"
            assert record.failure is None, record.failure
        assert job_report(api, low)["attempts"] == 1  # held, never started and put back
        after = power_status(api, lambda p: p["JOBS_POWER_HELD"] == 0, time.monotonic())
        events = {e.event_id for e in api.event_history()}
    assert D.event("POWER_FLOOR").id not in events
    assert FLOOR_SOC < after["BATTERY_SOC_MIN"] < 27.0
    print(
        f"\n{len(ran)} of {HIGH_JOBS} high-priority jobs ran in eclipse; lowest charge "
        f"{after['BATTERY_SOC_MIN']:.2f} % against a floor of {FLOOR_SOC:g} % "
        f"(the hold began at {energy['soc']:.2f} %); {time.monotonic() - t0:.1f} s in all"
    )
