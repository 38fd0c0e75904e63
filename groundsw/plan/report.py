"""A plan and its comparison with the naive plan, as the operator reads them (tables) and as
other tools read them (one JSON document). Pure: text and values from the plan."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from groundsw.plan.baseline import Comparison
from groundsw.plan.evaluate import Evaluation, JobOutcome
from groundsw.plan.model import OrbitWindows, PlanSettings, PowerModel, ThermalLimit
from groundsw.plan.planner import Placement, Plan
from groundsw.text_table import table_lines
from groundsw.timespec import utc_second, utc_text

if TYPE_CHECKING:
    from orbit.clock import OrbitClock


def plan_text(
    plan: Plan,
    windows: OrbitWindows,
    power: PowerModel,
    thermal: ThermalLimit,
    settings: PlanSettings,
    clock: OrbitClock,
) -> list[str]:
    """The plan: its frame, one row per job, the jobs left out, the passes, the battery."""
    ev = plan.evaluation
    hours = settings.horizon_s / 3600
    lines = [
        f"plan from {utc_second(settings.start)} for {hours:g} h: {len(windows.passes)} passes, "
        f"{len(windows.eclipses)} eclipses; times UTC (orbit)",
        f"battery {power.capacity_wh:g} Wh at {power.initial_soc_pct:.1f} %, floor "
        f"{power.floor_soc_pct:g} % (planned above {power.floor_soc_pct + settings.reserve_pct:g}"
        f" %); compute {power.compute_w:g} W at a thermal duty of {100 * thermal.duty:g} %",
        f"uploaded in the pass {_clock(plan.contact.start)}-{_time_of_day(plan.contact.end)}, "
        f"first release at {_clock(plan.first_release)}",
    ]
    if not clock.identity:
        lines.append(
            f"payload clock: orbit T is {utc_text(clock.bench_start)} + (T - "
            f"{utc_text(clock.orbit_start)}) / {clock.time_scale:g}"
        )
    lines += ["", f"{len(plan.planned)} jobs planned, {len(plan.unplanned)} left out"]
    placements = {p.release.job.name: p.placement for p in plan.planned}
    rows: list[tuple[str, ...]] = [
        ("JOB", "PRIO", "RED", "COMPUTE", "RELEASE", "COMPUTES", "DOWN, PASS", "DEADLINE", "")
    ]  # fmt: skip
    for o in ev.outcomes:
        rows.append(_row(o, placements[o.job.name]))
    lines += table_lines(rows, right={1, 3})
    for left in plan.unplanned:
        lines.append(f"left out: {left.job.name}: {left.reason.value} ({left.detail})")
    lines += ["", *_passes(ev, windows), "", _battery(ev, power, settings)]
    return lines


def comparison_text(comparison: Comparison, power: PowerModel) -> list[str]:
    """The plan and the naive plan side by side: each job, then the totals."""
    planned, naive = comparison.planned, comparison.naive
    total = len(naive.outcomes)
    mine = {o.job.name: o for o in planned.outcomes}
    jobs: list[tuple[str, ...]] = [("JOB", "DEADLINE", "PLANNED: DOWN", "", "NAIVE: DOWN", "")]
    for o in naive.outcomes:
        ours = mine.get(o.job.name)
        jobs.append(
            (
                o.job.name,
                _clock(o.job.deadline) if o.job.deadline is not None else "-",
                _down(ours) if ours is not None else "left out",
                _verdict(ours) if ours is not None else "",
                _down(o),
                _verdict(o),
            )
        )
    rows: list[tuple[str, ...]] = [
        ("", "PLANNED", "NAIVE"),
        (
            "jobs on the ground by their deadline",
            f"{planned.by_deadline} of {total}",
            f"{naive.by_deadline} of {total}",
        ),
        ("results on the ground by the end", str(planned.on_ground), str(naive.on_ground)),
        ("lowest battery charge", f"{planned.min_soc_pct:.1f} %", f"{naive.min_soc_pct:.1f} %"),
        (
            f"time at or below the floor ({power.floor_soc_pct:g} %)",
            _duration(planned.floor_s),
            _duration(naive.floor_s),
        ),
        ("queue held by the power budget", _held(planned), _held(naive)),
        ("jobs timed out on board", str(planned.timed_out), str(naive.timed_out)),
    ]
    return [
        "compared with the naive plan (every job submitted at once at the first contact, each "
        "result down at the next contact), by the same model:",
        *table_lines(jobs),
        "",
        *table_lines(rows, right={1, 2}),
    ]


def _down(o: JobOutcome) -> str:
    """`12-01 00:52:02 #2`: when the result is on the ground, and by which pass."""
    if o.downlinked is None or o.pass_index is None:
        return "-"
    return f"{_clock(o.downlinked)} #{o.pass_index + 1}"


def plan_record(
    plan: Plan, windows: OrbitWindows, clock: OrbitClock, naive: Evaluation | None = None
) -> dict[str, Any]:
    """`--json`: times in ISO 8601 UTC (orbit, and the payload's clock for releases)."""
    placements = {p.release.job.name: p.placement.name for p in plan.planned}
    record: dict[str, Any] = {
        "from": utc_text(windows.start),
        "until": utc_text(windows.end),
        "passes": [{"aos": utc_text(p.start), "los": utc_text(p.end)} for p in windows.passes],
        "contact": {"aos": utc_text(plan.contact.start), "los": utc_text(plan.contact.end)},
        "first_release": utc_text(plan.first_release),
        "planned": [
            {**_outcome_record(o, clock), "placement": placements[o.job.name]}
            for o in plan.evaluation.outcomes
        ],
        "unplanned": [
            {"job": u.job.name, "reason": u.reason.name, "detail": u.detail} for u in plan.unplanned
        ],
        "summary": _summary_record(plan.evaluation),
    }
    if naive is not None:
        record["naive"] = {
            "jobs": [_outcome_record(o, clock) for o in naive.outcomes],
            "summary": _summary_record(naive),
        }
    return record


def _outcome_record(o: JobOutcome, clock: OrbitClock) -> dict[str, Any]:
    r = o.release
    return {
        "job": o.job.name,
        "release": utc_text(r.at),
        "release_payload_clock": utc_text(clock.to_bench(r.at)),
        "onboard_deadline_s": r.deadline_s,
        "started": _maybe(o.started),
        "finished": _maybe(o.finished),
        "timed_out": _maybe(o.timed_out),
        "downlinked": _maybe(o.downlinked),
        "pass": None if o.pass_index is None else o.pass_index + 1,
        "deadline": _maybe(o.job.deadline),
        "met_deadline": o.met_deadline,
        "fate": o.fate.name,
        "held_s": round(o.held_s, 3),
        "holds": sorted(h.name for h in o.holds),
    }


def _summary_record(ev: Evaluation) -> dict[str, Any]:
    return {
        # The charge as a polyline: linear between the points (exact for the model).
        "battery": [[utc_text(t), round(soc, 3)] for t, soc in ev.curve],
        "by_deadline": ev.by_deadline,
        "on_ground": ev.on_ground,
        "jobs": len(ev.outcomes),
        "min_soc_pct": round(ev.min_soc_pct, 3),
        "min_soc_at": utc_text(ev.min_soc_at),
        "floor_s": round(ev.floor_s, 3),
        "held_s": round(ev.held_s, 3),
        "timed_out": ev.timed_out,
    }


def _row(o: JobOutcome, placement: Placement) -> tuple[str, ...]:
    job = o.job
    computes = "-"
    if o.started is not None:
        end = o.finished if o.finished is not None else o.timed_out
        until = _time_of_day(end) if end is not None else "..."
        where = "sunlit" if placement is Placement.SUNLIT else "eclipse"
        computes = f"{_time_of_day(o.started)}-{until} {where}"
    return (
        job.name,
        str(job.priority),
        job.redundancy.name,
        _duration(job.compute_s),
        _clock(o.release.at),
        computes,
        _down(o),
        _clock(job.deadline) if job.deadline is not None else "-",
        _verdict(o),
    )


def _verdict(o: JobOutcome) -> str:
    if o.met_deadline:
        if o.job.deadline is None or o.downlinked is None:
            return "down"
        return f"met, {_duration(o.job.deadline - o.downlinked)} early"
    return f"MISSED: {o.fate.value}"


def _passes(ev: Evaluation, windows: OrbitWindows) -> list[str]:
    carried: dict[int, list[str]] = {}
    for o in ev.outcomes:
        if o.pass_index is not None:
            carried.setdefault(o.pass_index, []).append(o.job.name)
    rows: list[tuple[str, ...]] = [("PASS", "AOS", "LOS", "DURATION", "RESULTS DOWN")]
    for index, p in enumerate(windows.passes):
        names = carried.get(index, [])
        rows.append(
            (f"#{index + 1}", _clock(p.start), _clock(p.end), _duration(p.duration_s),
             ", ".join(names) if names else "-")
        )  # fmt: skip
    return table_lines(rows, right={3})


def _battery(ev: Evaluation, power: PowerModel, settings: PlanSettings) -> str:
    floor = "never at the floor" if ev.floor_s == 0 else f"{_duration(ev.floor_s)} at the floor"
    held = f"; the power budget holds the queue {_duration(ev.held_s)}" if ev.held_s > 0 else ""
    return (
        f"battery: lowest {ev.min_soc_pct:.1f} % at {_clock(ev.min_soc_at)}, "
        f"{ev.curve[-1][1]:.1f} % at the end; {floor}{held}"
    )


def _held(ev: Evaluation) -> str:
    if ev.held_s == 0:
        return _duration(0.0)
    return f"{_duration(ev.held_s)} ({ev.held_jobs} jobs)"


def _clock(unix: float) -> str:
    """`11-30 23:42:38` (UTC)."""
    return dt.datetime.fromtimestamp(round(unix), dt.UTC).strftime("%m-%d %H:%M:%S")


def _time_of_day(unix: float) -> str:
    return dt.datetime.fromtimestamp(round(unix), dt.UTC).strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    if hours:
        return f"{hours}h{rest // 60:02d}m"
    return f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{seconds:.1f}s"


def _maybe(unix: float | None) -> str | None:
    return None if unix is None else utc_text(unix)
