"""`groundsw plan --upload` against an in-process payload: each model checked and each input
fitted before anything is sent, every input uploaded once (not again when on board), one
time-tagged JOB_SUBMIT per planned job at its release on the payload's clock, as many per
TC[11,4] as a packet carries, and all of them or none scheduled."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from groundsw.plan.model import PlanJob, PowerModel
from groundsw.plan.planner import Plan, plan_jobs
from groundsw.plan_upload import PlanTooLate, upload_plan
from groundsw.transfer import GroundInputError, OperationContext
from groundsw.verification import CommandFailed
from orbit.clock import FLIGHT, OrbitClock
from spacelink.pus_schedule import (
    ScheduleRequestId,
    SummaryEntry,
    TimeTaggedTc,
    decode_insert,
    encode_summary,
)
from spacelink.spacepacket import PusTc
from tests.unit.groundsw.fake_payload import D, FakePayload
from tests.unit.groundsw.fakes import FastClock
from tests.unit.groundsw.plan.plan_samples import FULL_DUTY, NO_MARGIN, T0, made_up_sky, settings

SUBMIT = D.command("JOB_SUBMIT")


class SchedulingPayload(FakePayload):
    """The fake payload with a schedule: summary, insertion (refused on demand) and deletion."""

    def __init__(self) -> None:
        super().__init__()
        self.schedule: dict[ScheduleRequestId, TimeTaggedTc] = {}
        self.inserts = 0
        self.refuse_insert: int | None = None  # the number of the insertion to refuse

    def do_schedule_summary_all(self, v: dict[str, Any]) -> tuple[str, str] | None:
        entries = [SummaryEntry(a.release, rid) for rid, a in self.schedule.items()]
        self.tm("SCHEDULE_SUMMARY_REPORT", {"activities": encode_summary(entries)})
        self.progress(1)  # one report sent
        return None

    def do_schedule_insert(self, v: dict[str, Any]) -> tuple[str, str] | None:
        self.inserts += 1
        if self.inserts == self.refuse_insert:
            return "SCHEDULE_FULL", "no room"
        for activity in decode_insert(v["activities"]):
            self.schedule[activity.request_id] = activity
        return None

    def do_schedule_delete(self, v: dict[str, Any]) -> tuple[str, str] | None:
        for value in v["request_ids"]:
            del self.schedule[ScheduleRequestId.from_value(value)]
        return None

    def submits(self) -> list[tuple[float, dict[str, Any]]]:
        """The scheduled JOB_SUBMITs: (release, arguments), in time order."""
        found = []
        for activity in self.schedule.values():
            tc = PusTc.unpack(activity.packet)
            assert (tc.service, tc.subtype) == (SUBMIT.service, SUBMIT.subtype)
            found.append((activity.release.to_unix(), SUBMIT.decode(tc.app_data)))
        return sorted(found, key=lambda item: item[0])


SKY = made_up_sky(passes=[(0.0, 0.1), (1.8, 1.9), (3.4, 3.5)], eclipses=[(1.0, 1.6), (2.6, 3.2)])


def context(payload: FakePayload) -> tuple[OperationContext, list[str]]:
    lines: list[str] = []
    ctx = OperationContext(payload, D, 30.0, 115200, lines.append, lines.append, clock=FastClock())
    return ctx, lines


def tensor(path: Path, seed: int) -> str:
    np.save(path, np.random.default_rng(seed).standard_normal((2, 4)).astype(np.float32))
    return str(path)


def make_plan(tmp_path: Path, count: int, time_scale: float = 1.0) -> Plan:
    shared = tensor(tmp_path / "shared.npy", 0)
    jobs = [
        PlanJob(
            f"job-{i}",
            "cnn",
            shared if i % 2 else tensor(tmp_path / f"in-{i}.npy", i + 1),
            compute_s=60.0,
            result_octets=100,
            priority=i,
            deadline=None if i == 0 else T0 + 3.6 * 3600,
        )
        for i in range(count)
    ]
    plan = plan_jobs(jobs, SKY, PowerModel(), FULL_DUTY, NO_MARGIN,
                     settings(lead_s=60.0, time_scale=time_scale))  # fmt: skip
    assert len(plan.planned) == count
    return plan


@pytest.fixture
def payload() -> SchedulingPayload:
    p = SchedulingPayload()
    p.models[("cnn", 3)] = b"weights"
    return p


def test_the_inputs_go_up_once_and_each_job_is_scheduled_at_its_release(
    payload: SchedulingPayload, tmp_path: Path
) -> None:
    plan = make_plan(tmp_path, 4)
    ctx, lines = context(payload)
    uploaded = upload_plan(ctx, plan, FLIGHT)
    # Three inputs (two jobs share one), stored under their content's name.
    assert len(payload.files) == 3 and all(n.startswith("input-") for n in payload.files)
    assert sum(name == "MODEL_INFO" for name, _ in payload.sent) == 3  # once per model and input
    submits = payload.submits()
    for (at, values), release in zip(submits, plan.releases, strict=True):
        assert at == pytest.approx(release.at, abs=0.001)  # CDS time: to the millisecond
        job = release.job
        assert values["model"] == "cnn" and values["version"] == 3  # the highest, resolved
        assert values["priority"] == job.priority and values["redundancy"] == 0
        expected = 0 if release.deadline_s is None else math.ceil(release.deadline_s)
        assert values["deadline"] == expected
        assert payload.files[values["input"]] == Path(job.input).read_bytes()
    assert [u.name for u in uploaded] == [r.job.name for r in plan.releases]
    assert "3 inputs: 3 uploaded, 0 on board already" in lines
    # Again: the inputs are on board, nothing is sent twice; the jobs are scheduled again.
    sent = sum(name == "FILE_UPLOAD_CHUNK" for name, _ in payload.sent)
    upload_plan(ctx, plan, FLIGHT)
    assert sum(name == "FILE_UPLOAD_CHUNK" for name, _ in payload.sent) == sent
    assert "3 inputs: 0 uploaded, 3 on board already" in lines
    assert len(payload.schedule) == 8


def test_on_a_bench_the_releases_and_deadlines_are_on_its_clock(
    payload: SchedulingPayload, tmp_path: Path
) -> None:
    plan = make_plan(tmp_path, 2, time_scale=10.0)
    clock = OrbitClock(orbit_start=T0, bench_start=T0 + 1e6, time_scale=10.0)
    ctx, _ = context(payload)
    upload_plan(ctx, plan, clock)
    for (at, values), release in zip(payload.submits(), plan.releases, strict=True):
        assert at == pytest.approx(T0 + 1e6 + (release.at - T0) / 10.0, abs=0.001)
        if release.deadline_s is not None:
            assert values["deadline"] == math.ceil(release.deadline_s)


def test_many_jobs_go_in_several_requests_and_a_refusal_leaves_none_scheduled(
    payload: SchedulingPayload, tmp_path: Path
) -> None:
    plan = make_plan(tmp_path, 40)
    ctx, _ = context(payload)
    upload_plan(ctx, plan, FLIGHT)
    assert len(payload.schedule) == 40
    inserts = [v for name, v in payload.sent if name == "SCHEDULE_INSERT"]
    assert len(inserts) >= 3  # a JOB_SUBMIT and its time are some 50 octets
    assert all(len(v["activities"]) + 13 <= payload.max_packet_octets for v in inserts)
    payload.schedule.clear()
    payload.inserts = 0
    payload.refuse_insert = 2
    with pytest.raises(CommandFailed, match="SCHEDULE_FULL"):
        upload_plan(ctx, plan, FLIGHT)
    assert payload.schedule == {}  # the first request's activities deleted again
    assert any(name == "SCHEDULE_DELETE" for name, _ in payload.sent)


def test_a_plan_whose_first_release_is_gone_is_refused_before_anything_is_scheduled(
    payload: SchedulingPayload, tmp_path: Path
) -> None:
    plan = make_plan(tmp_path, 2)
    ctx, _ = context(payload)
    first = min(r.at for r in plan.releases)
    with pytest.raises(PlanTooLate, match=r"plan again") as caught:
        upload_plan(ctx, plan, FLIGHT, now=lambda: first + 30.0)
    assert "30 s gone" in str(caught.value)
    assert isinstance(caught.value, GroundInputError)  # one sentence, exit 2 at the CLI
    assert payload.schedule == {}
    assert not any(name == "SCHEDULE_INSERT" for name, _ in payload.sent)


def test_an_unknown_model_is_refused_before_any_upload(
    payload: SchedulingPayload, tmp_path: Path
) -> None:
    payload.models.clear()
    ctx, _ = context(payload)
    with pytest.raises(CommandFailed, match="UNKNOWN_MODEL"):
        upload_plan(ctx, make_plan(tmp_path, 2), FLIGHT)
    assert payload.files == {} and payload.schedule == {}
