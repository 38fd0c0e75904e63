"""`groundsw plan --upload` through the ground station to a payload on the emulated link: four
jobs planned over the sample orbit, the bench's clock put a few seconds before the end of a
pass (real time, no compression), the inputs uploaded and the JOB_SUBMITs time-tagged; the
payload releases each at its time and every job succeeds, its release event within 100 ms of
the plan's time."""

from __future__ import annotations

import calendar
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from hil.bench import Bench
from orbit import parse_station, passes, read_tle
from telemetry_defs.loader import default_dictionary
from tests.hil.onboard import TINY_WIDTHS
from tests.hil.station import command_done, groundsw, http, wait_link_up
from tests.unit.groundsw.cli_runs import unix
from tests.unit.groundsw.plan.plan_samples import MUNICH, SAMPLE_TLE
from tools.model_gen import mlp, model_bytes

D = default_dictionary()

pytestmark = pytest.mark.hil

JOBS = """\
[defaults]
model = "tiny"
job_s = 0.5
result_octets = 300
deadline = "+10m"

[[jobs]]
name = "first"
input = "a.npy"
priority = 5

[[jobs]]
name = "second"
input = "b.npy"

[[jobs]]
name = "third"
input = "a.npy"
redundancy = "tmr"

[[jobs]]
name = "fourth"
input = "c.npy"
priority = 200
"""
# Margins for a pass of seconds: no job released before 6 s after the plan is made (the inputs'
# upload and the insertion, through the station at 115200 baud, take 3 or 4 s).
POWER = """\
[battery]
initial_soc_pct = 90.0
[link]
pass_margin_s = 2.0
result_overhead_s = 1.0
[plan]
lead_s = 6.0
"""
RELEASE = re.compile(r"^  (\w+) +release (\S+)  .*request ID (0x[0-9A-F]{16})$")


def orbit_start() -> float:
    """An orbit time 19 s before the end of a pass over Munich: the plan is uploaded in it and
    its jobs computed for it, as late as fits (some 12 s later: the upload has 9 s)."""
    epoch = calendar.timegm((2026, 11, 30, 12, 0, 0))
    found = passes(read_tle(SAMPLE_TLE), parse_station(MUNICH), epoch, epoch + 86400)
    first = next(p for p in found if p.duration_s > 120)
    return first.los - 19.0


def test_a_plan_goes_up_through_the_station_and_its_jobs_are_released_on_time(
    station: tuple[Bench, Path, Path], tmp_path: Path
) -> None:
    _, data, sock = station
    model = tmp_path / "tiny.onnx"
    model.write_bytes(model_bytes(mlp(widths=TINY_WIDTHS)))
    rng = np.random.default_rng(4)
    for name in ("a", "b", "c"):
        np.save(tmp_path / f"{name}.npy", rng.standard_normal((2, 16)).astype(np.float32))
    (tmp_path / "jobs.toml").write_text(JOBS)
    (tmp_path / "power.toml").write_text(POWER)
    with http(sock) as api:
        wait_link_up(api)
        done = groundsw(data, "model", "upload", str(model), "--name", "tiny")
        assert done.returncode == 0, done.stderr

        done = groundsw(
            data, "plan", "--jobs", str(tmp_path / "jobs.toml"), "--tle", str(SAMPLE_TLE),
            "--station", MUNICH, "--power", str(tmp_path / "power.toml"),
            "--orbit-start", str(orbit_start()), "--upload",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "4 jobs planned, 0 left out" in done.stdout
        assert "3 inputs: 3 uploaded, 0 on board already" in done.stdout
        planned = {}
        for line in done.stdout.splitlines():
            found = RELEASE.match(line)
            if found:
                planned[found.group(3)] = (found.group(1), unix(found.group(2)))
        assert sorted(name for name, _ in planned.values()) == ["first", "fourth", "second",
                                                                "third"]  # fmt: skip
        assert max(at for _, at in planned.values()) < time.time() + 20

        # Each JOB_SUBMIT released at its time by the payload's clock, each job succeeded.
        released: dict[str, float] = {}
        succeeded = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(released) < 4 or succeeded < 4):
            time.sleep(1.0)
            events = groundsw(data, "events", "--since", "5m", "--format", "json")
            assert events.returncode == 0, events.stderr
            records = json.loads(events.stdout)
            for record in records:
                if record["event"] == "SCHEDULE_ACTIVITY_RELEASED":
                    request = re.search(r"request_id=(0x[0-9A-Fa-f]+)", record["text"])
                    assert request is not None, record
                    released[request.group(1).upper().replace("0X", "0x")] = unix(record["onboard"])
            succeeded = sum(r["event"] == "JOB_SUCCEEDED" for r in records)
        assert set(released) == set(planned), (released, planned)
        for request, (name, at) in planned.items():
            assert 0.0 <= released[request] - at < 0.1, (name, released[request] - at)
        assert succeeded == 4

        # The payload's own list: four jobs of the model, succeeded; nothing left scheduled.
        listing = command_done(api, "JOB_LIST", "limit=10")
        (reply,) = [r for r in listing["replies"] if r["name"] == "JOB_LIST_REPORT"]
        assert reply["values"]["models"] == ["tiny"] * 4
        assert set(reply["values"]["states"]) == {D.enums["JobState"].values["SUCCEEDED"]}
        summary = command_done(api, "SCHEDULE_SUMMARY_ALL")
        (report,) = [r for r in summary["replies"] if r["name"] == "SCHEDULE_SUMMARY_REPORT"]
        assert report["values"]["activities"] == "0000"  # N = 0
