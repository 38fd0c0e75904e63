"""The job file of `groundsw plan`, TOML or JSON, once read: a list of jobs and the defaults
they share (docs/planning.md, "The job file").

    [defaults]                      # optional: any job key but name and input
    model = "cnn"
    run_s = 12.0

    [[jobs]]
    name = "flood-0412"
    input = "tiles/flood-0412.npy"  # relative to the job file
    redundancy = "tmr"
    priority = 10
    deadline = "+6h"                # from the plan's start; or an ISO time, or UNIX seconds

JSON: {"defaults": {...}, "jobs": [{...}, ...]}. Every value is checked; a refusal names the job
and the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from groundsw.plan.model import MAX_PRIORITY, PlanInputError, PlanJob, Redundancy
from groundsw.timespec import TimeSpecError, parse_instant

#: What a result is reckoned at when the file does not say: a classifier's few floats and the
#: .npy header come to far less; an image-sized output to far more.
DEFAULT_RESULT_OCTETS = 4096
JOB_KEYS = frozenset(
    {"name", "model", "version", "input", "priority", "redundancy", "deadline", "run_s",
     "job_s", "result_octets"}
)  # fmt: skip
DEFAULT_KEYS = JOB_KEYS - {"name", "input"}
MAX_VERSION = 0xFFFF


def parse_jobs(document: Mapping[str, Any], base: Path, start: float) -> list[PlanJob]:
    """The jobs of a read job file; inputs relative to `base`, relative deadlines from `start`."""
    unknown = set(document) - {"jobs", "defaults"}
    if unknown:
        raise PlanInputError(
            f"the job file has {_names(unknown)}: expected only 'jobs' and 'defaults'"
        )
    defaults = document.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise PlanInputError("'defaults' in the job file must be a table of job keys")
    wrong = set(defaults) - DEFAULT_KEYS
    if wrong:
        raise PlanInputError(f"'defaults' in the job file has {_names(wrong)}, which no job shares")
    entries = document.get("jobs")
    if not isinstance(entries, list) or not entries:
        raise PlanInputError("the job file lists no jobs: give them as [[jobs]] (TOML) or 'jobs'")
    jobs = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, Mapping):
            raise PlanInputError(f"job {number} in the job file is not a table of keys")
        shared = dict(defaults)
        if "run_s" in entry or "job_s" in entry:
            # A job's own compute time replaces the shared one, in either form.
            shared.pop("run_s", None)
            shared.pop("job_s", None)
        jobs.append(_job({**shared, **entry}, number, base, start))
    return jobs


def _job(values: Mapping[str, Any], number: int, base: Path, start: float) -> PlanJob:
    name = values.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PlanInputError(f"job {number} in the job file has no name")
    where = f"job {name}"
    unknown = set(values) - JOB_KEYS
    if unknown:
        raise PlanInputError(f"{where} has {_names(unknown)}: see docs/planning.md for the keys")
    model = _text(values, "model", where)
    path = Path(_text(values, "input", where))
    redundancy_text = values.get("redundancy", "none")
    if (
        not isinstance(redundancy_text, str)
        or redundancy_text.upper() not in Redundancy.__members__
    ):
        raise PlanInputError(
            f"{where}: redundancy {redundancy_text!r} is not none, dmr, tmr or abft"
        )
    redundancy = Redundancy[redundancy_text.upper()]
    if ("run_s" in values) == ("job_s" in values):
        raise PlanInputError(
            f"{where}: give its compute time as run_s (seconds per run) or job_s (the whole "
            "job), one of them"
        )
    if "run_s" in values:
        compute = _number(values, "run_s", where) * redundancy.runs
    else:
        compute = _number(values, "job_s", where)
    deadline = values.get("deadline")
    return PlanJob(
        name=name.strip(),
        model=model,
        input=str(path if path.is_absolute() else base / path),
        compute_s=compute,
        result_octets=_integer(values, "result_octets", where, DEFAULT_RESULT_OCTETS, 0, 2**32),
        priority=_integer(values, "priority", where, 0, 0, MAX_PRIORITY),
        redundancy=redundancy,
        version=_integer(values, "version", where, 0, 0, MAX_VERSION),
        deadline=None if deadline is None else parse_deadline(deadline, start, where),
    )


def parse_deadline(value: Any, start: float, where: str = "the deadline") -> float:
    """`+DURATION` from `start` (+90m, +6h, +1d12h), an ISO 8601 time (UTC unless it says
    otherwise) or UNIX seconds, as a number or as text."""
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TimeSpecError(value)
        return parse_instant(str(value), start)
    except TimeSpecError:
        raise PlanInputError(
            f"{where}: the deadline {value!r} is not a time: give +DURATION from the plan's "
            "start (+90m, +6h), an ISO time such as 2026-12-01T06:00:00Z, or UNIX seconds"
        ) from None


def _text(values: Mapping[str, Any], key: str, where: str) -> str:
    value = values.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PlanInputError(f"{where} has no {key}")
    return value.strip()


def _number(values: Mapping[str, Any], key: str, where: str) -> float:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlanInputError(f"{where}: {key} {value!r} is not a number of seconds")
    if not (math.isfinite(value) and value > 0):
        raise PlanInputError(f"{where}: {key} must be above 0 s, found {value!r}")
    return float(value)


def _integer(
    values: Mapping[str, Any], key: str, where: str, default: int, low: int, high: int
) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanInputError(f"{where}: {key} {value!r} is not a whole number")
    if not low <= value <= high:
        raise PlanInputError(f"{where}: {key} {value} is outside {low} to {high}")
    return value


def _names(keys: set[str]) -> str:
    listed = ", ".join(repr(k) for k in sorted(keys))
    return f"unknown key{'s' if len(keys) > 1 else ''} {listed}"
