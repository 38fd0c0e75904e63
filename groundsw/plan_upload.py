"""`groundsw plan --upload`: a plan onto the payload through the link (or the ground station
that owns it): each job's model checked and its input fitted to the model's signature, the
inputs the payload does not hold uploaded, then every JOB_SUBMIT inserted time-tagged into the
payload's schedule (ST[11]) at its release time on the payload's clock. All the commands are
those of `groundsw job submit` and `groundsw schedule insert`, through their own code; each
verification report is checked, and a refusal stops the upload with nothing scheduled."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from groundsw.job_commands import check_input_fits, input_file_name
from groundsw.plan.planner import Plan
from groundsw.schedule_commands import insert_commands
from groundsw.timespec import utc_text
from groundsw.transfer import GroundInputError, OperationContext, file_sha256
from spacelink.pus_schedule import TimeTaggedTc

if TYPE_CHECKING:
    from orbit.clock import OrbitClock

# The payload refuses an activity due sooner than its time margin ([schedule] time_margin_s,
# 1 s by default); the insertion itself takes a round trip or two.
RELEASE_MARGIN_S = 3.0


class PlanTooLate(GroundInputError):
    """The plan's first release is gone, or too near to schedule, by the time it is inserted."""


@dataclass(frozen=True, slots=True)
class UploadedJob:
    name: str
    release: float  # the payload's clock
    deadline_s: int
    activity: TimeTaggedTc


def upload_plan(
    ctx: OperationContext,
    plan: Plan,
    clock: OrbitClock,
    now: Callable[[], float] = time.time,
) -> list[UploadedJob]:
    """Check, upload and schedule `plan` (see the module); what was scheduled, in time order."""
    planned = plan.releases
    if not planned:
        ctx.out("nothing to upload: no job is planned")
        return []
    versions: dict[tuple[str, int, str], int] = {}
    for release in planned:
        job = release.job
        key = (job.model, job.version, job.input)
        if key not in versions:
            probe = argparse.Namespace(
                model=job.model, version=str(job.version), input=Path(job.input)
            )
            versions[key] = check_input_fits(ctx, probe)
    names: dict[str, str] = {}
    stored_before = 0
    for release in planned:
        path = release.job.input
        if path in names:
            continue
        name = input_file_name(file_sha256(Path(path)))
        result = ctx.uploader().upload(Path(path), name, content_addressed=True)
        stored_before += result.stored_before
        names[path] = name
    command = ctx.dictionary.command("JOB_SUBMIT")
    entries = []
    for release in planned:
        job = release.job
        deadline_s = 0 if release.deadline_s is None else max(1, math.ceil(release.deadline_s))
        values = {
            "model": job.model,
            "version": versions[(job.model, job.version, job.input)],
            "input": names[job.input],
            "priority": job.priority,
            "redundancy": job.redundancy.name,
            "deadline": deadline_s,
        }
        entries.append((job.name, clock.to_bench(release.at), deadline_s, command.encode(values)))
    first = min(at for _, at, _, _ in entries)

    def checked(at: float) -> Callable[[], float]:
        def release_time() -> float:
            # Asked once the schedule's summary came back: the uploads took their time.
            if first < now() + RELEASE_MARGIN_S:
                raise PlanTooLate(
                    f"the plan's first release at {utc_text(first)} is {_late(first, now())}: "
                    "plan again (a later --from, or a longer lead) and upload at once"
                )
            return at

        return release_time

    activities = insert_commands(ctx, [(checked(at), command, data) for _, at, _, data in entries])
    uploaded = [
        UploadedJob(name, at, deadline_s, activity)
        for (name, at, deadline_s, _), activity in zip(entries, activities, strict=True)
    ]
    inputs = len(names)
    ctx.out(
        f"{inputs} input{'s' if inputs != 1 else ''}: {inputs - stored_before} uploaded, "
        f"{stored_before} on board already"
    )
    ctx.out(f"{len(uploaded)} JOB_SUBMIT scheduled (payload clock, UTC):")
    width = max(len(u.name) for u in uploaded)
    for u in uploaded:
        deadline = f"deadline {u.deadline_s} s" if u.deadline_s else "no deadline"
        ctx.out(
            f"  {u.name:<{width}}  release {utc_text(u.release)}  {deadline:<18}  "
            f"request ID {u.activity.request_id}"
        )
    return uploaded


def _late(first: float, now: float) -> str:
    if first <= now:
        return f"{now - first:.0f} s gone"
    return f"only {first - now:.1f} s away"
