"""`groundsw job`: submit inference jobs (service 130), follow them and fetch their results."""

from __future__ import annotations

import argparse
import datetime as dt
import queue
from pathlib import Path
from typing import Any

import numpy as np

from groundsw.model_commands import model_info, parse_version
from groundsw.session import LinkTimeout
from groundsw.signature import InputDoesNotFit, check_fits, npy_header, parse_inputs
from groundsw.text_table import table_lines
from groundsw.timespec import utc_text
from groundsw.transfer import (
    GroundInputError,
    OneSentenceParser,
    OperationContext,
    add_operation,
    download_to,
    event_values,
    file_sha256,
    readable_file,
)
from groundsw.verification import CommandFailed, drain
from spacelink.pus import Stage, VerificationReport
from telemetry_defs.model import Dictionary

REDUNDANCY = ("none", "dmr", "tmr", "abft")
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
MAX_JOB_ID = 0xFFFFFFFF
MAX_PRIORITY = 0xFF
MAX_DEADLINE_S = 0xFFFFFFFF
MAX_LIST = 100
DEFAULT_WAIT_S = 600.0
# JOB_STATUS polls while waiting; the JOB_SUCCEEDED and JOB_FAILED events cut the wait short.
POLL_INTERVAL_S = 1.5
FINAL_EVENTS = ("JOB_SUCCEEDED", "JOB_FAILED")
SUCCEEDED = "SUCCEEDED"
QUEUED = "QUEUED"
_RUNNING_STATES = (QUEUED, "RUNNING")
HOLD_PARAMETER = "JOB_QUEUE_HOLD"
HELD_TEXT = (
    f"the queue is held ({HOLD_PARAMETER} is true): no queued job starts until "
    f"`groundsw cmd PARAM_SET {HOLD_PARAMETER}=false`"
)


class JobWaitTimeout(LinkTimeout):
    """The job did not reach a final state in the time allowed."""


def input_file_name(sha256: bytes) -> str:
    """The content-addressed onboard name of an input tensor: the same tensor, the same name."""
    return f"input-{sha256.hex()[:16]}.npy"


def check_npy(path: Path) -> np.ndarray:
    """The tensor in a plain .npy file (no pickles); GroundInputError otherwise."""
    readable_file(path)
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head.startswith(ZIP_MAGIC):
        raise GroundInputError(f"{path} is an .npz archive, not a .npy tensor")
    if head != NPY_MAGIC:
        raise GroundInputError(f"{path} is not a .npy file (it does not start with the NPY magic)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise GroundInputError(
                f"{path} holds Python objects (a pickle), which the payload refuses"
            ) from None
        raise GroundInputError(f"{path} is not a plain .npy tensor: {exc}") from None
    except (OSError, EOFError) as exc:
        raise GroundInputError(f"{path} is not a plain .npy tensor: {exc}") from None
    if not isinstance(loaded, np.ndarray):
        raise GroundInputError(f"{path} is not a plain .npy tensor")
    return loaded


def _bounded(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise GroundInputError(f"{what} {text!r} is not a number") from None
    if not low <= value <= high:
        raise GroundInputError(f"{what} {value} is outside {low} to {high}")
    return value


def parse_job_id(text: str) -> int:
    return _bounded(text, "job ID", 1, MAX_JOB_ID)


def parse_redundancy(text: str) -> str:
    if text.lower() not in REDUNDANCY:
        raise GroundInputError(f"unknown redundancy {text!r}: use none, dmr, tmr or abft")
    return text.upper()


def add_job_commands(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "job", help="inference jobs: submit, status, list, cancel, wait, result"
    )
    jobs = parser.add_subparsers(
        dest="job_command", required=True, metavar="JOB_COMMAND", parser_class=OneSentenceParser
    )
    submit = add_operation(
        jobs,
        "submit",
        "upload an input tensor and queue a job; prints the job ID on the last line",
        run_submit,
        _check_submit,
    )
    submit.add_argument("--model", required=True)
    submit.add_argument("--version", default="0", help="default: the highest registered")
    submit.add_argument("--input", required=True, type=Path, help="input tensor (.npy)")
    submit.add_argument(
        "--redundancy", default="none", help="none, dmr, tmr or abft (default none)"
    )
    submit.add_argument("--priority", default="0", help="0 to 255, higher first (default 0)")
    submit.add_argument("--deadline", default="0", help="seconds to finish in; 0: none")
    status = add_operation(jobs, "status", "report a job", run_status, _check_id)
    status.add_argument("job_id")
    listing = add_operation(jobs, "list", "list the newest jobs", run_list, _check_list)
    listing.add_argument("--limit", default="20", help="1 to 100 (default 20)")
    cancel = add_operation(jobs, "cancel", "cancel a queued or running job", run_cancel, _check_id)
    cancel.add_argument("job_id")
    wait = add_operation(jobs, "wait", "wait until a job ends", run_wait, _check_wait)
    wait.add_argument("job_id")
    wait.add_argument(
        "--timeout",
        dest="wait_timeout",
        default=str(DEFAULT_WAIT_S),
        help=f"seconds to wait (default {DEFAULT_WAIT_S:g})",
    )
    result = add_operation(
        jobs, "result", "download a job's result and check its SHA-256", run_result, _check_result
    )
    result.add_argument("job_id")
    result.add_argument("--out", required=True, type=Path, help="local .npy path to write")


def _check_submit(args: argparse.Namespace) -> None:
    check_npy(args.input)
    parse_version(args.version, zero_ok=True)
    parse_redundancy(args.redundancy)
    _bounded(args.priority, "priority", 0, MAX_PRIORITY)
    _bounded(args.deadline, "deadline", 0, MAX_DEADLINE_S)
    if not args.model:
        raise GroundInputError("the model name is empty")


def _check_id(args: argparse.Namespace) -> None:
    parse_job_id(args.job_id)


def _check_list(args: argparse.Namespace) -> None:
    _bounded(args.limit, "limit", 1, MAX_LIST)


def _wait_seconds(args: argparse.Namespace) -> float:
    try:
        seconds = float(args.wait_timeout)
    except ValueError:
        raise GroundInputError(f"timeout {args.wait_timeout!r} is not a number") from None
    if not seconds > 0:
        raise GroundInputError(f"timeout {seconds:g} is not a positive number of seconds")
    return seconds


def _check_wait(args: argparse.Namespace) -> None:
    parse_job_id(args.job_id)
    _wait_seconds(args)


def _check_result(args: argparse.Namespace) -> None:
    parse_job_id(args.job_id)
    if args.out.is_dir():
        raise GroundInputError(f"{args.out} is a directory: give the file to write")


def check_input_fits(ctx: OperationContext, args: argparse.Namespace) -> int:
    """The model version the job will run (MODEL_INFO); GroundInputError when the input does
    not fit its signature, before anything is uploaded."""
    report = model_info(ctx, args.model, parse_version(args.version, zero_ok=True))
    inputs = parse_inputs(report["signature"])
    if inputs is not None:  # else the payload checks it, after the upload
        try:
            check_fits(inputs, *npy_header(args.input))
        except InputDoesNotFit as exc:
            raise GroundInputError(
                f"{args.input} does not fit model {report['model']} version "
                f"{report['version']} ({report['signature']}): {exc}"
            ) from None
    return int(report["version"])


def run_submit(args: argparse.Namespace, ctx: OperationContext) -> int:
    version = check_input_fits(ctx, args)
    name = input_file_name(file_sha256(args.input))
    ctx.uploader().upload(args.input, name, content_addressed=True)

    def show(report: VerificationReport, elapsed: float) -> None:
        step = f" step {report.step}" if report.stage is Stage.PROGRESS else ""
        ctx.out(f"  {report.stage.label + step:<20}{elapsed * 1000:8.1f} ms")

    values = {
        "model": args.model,
        "version": version,  # the one the input was checked against
        "input": name,
        "priority": int(args.priority),
        "redundancy": parse_redundancy(args.redundancy),
        "deadline": int(args.deadline),
    }
    ctx.out(f"JOB_SUBMIT {args.model} version {version} on {name} ({values['redundancy']})")
    try:
        accepted = ctx.exchange().request(
            "JOB_SUBMIT", values, reply="JOB_ACCEPTED", until_reply=True, on_report=show
        )
    except LinkTimeout as exc:
        # Not asked again: a second JOB_SUBMIT would queue a second job.
        raise LinkTimeout(
            f"{exc}; the job may be queued all the same: see `groundsw job list`"
        ) from None
    assert accepted is not None
    ctx.out(f"job {accepted['job_id']} stored: {accepted['queued']} queued")
    ctx.out(str(accepted["job_id"]))
    return 0


def job_status(ctx: OperationContext, job_id: int) -> dict[str, Any]:
    return ctx.exchange().query(
        "JOB_STATUS", {"job_id": job_id}, reply="JOB_REPORT", match=lambda v: v["job_id"] == job_id
    )


def _enum(dictionary: Dictionary, enum: str, value: int) -> str:
    return dictionary.enums[enum].to_text(value)


def _time(unix: int) -> str:
    return utc_text(unix) if unix else "-"


def _version(version: int) -> str:
    # 0: a job stored by a payload that did not yet record the version it resolved.
    return f"version {version}" if version else "highest version (not recorded)"


def describe_job(dictionary: Dictionary, r: dict[str, Any]) -> list[str]:
    """TM[130,5] as lines for the operator."""
    state = _enum(dictionary, "JobState", r["state"])
    redundancy = _enum(dictionary, "Redundancy", r["redundancy"])
    deadline = f"{r['deadline']} s" if r["deadline"] else "none"
    lines = [
        f"job {r['job_id']}: {state} {r['progress']}%",
        f"  model       {r['model']} {_version(r['version'])}, input {r['input']}",
        f"  redundancy  {redundancy}, priority {r['priority']}, deadline {deadline}",
        f"  runs        {r['runs']} (attempt {r['attempts']}{_losses(r)}), "
        f"{r['disagreements']} outvoted",
        f"  submitted   {_time(r['submitted'])}",
        f"  started     {_time(r['started'])}",
        f"  finished    {_time(r['finished'])}",
    ]
    if r["result"]:
        lines.append(
            f"  result      {r['result']}, {r['result_size']} octets, "
            f"SHA-256 {bytes(r['result_sha256']).hex()}"
        )
    if r["failure_code"]:
        lines.append(f"  failure     {_failure(dictionary, r)}")
    return lines


def _losses(r: dict[str, Any]) -> str:
    """ ", its compute lost N times" when it was (a payload with an older dictionary: never)."""
    losses = r.get("losses", 0)
    return f", compute lost {losses} time{'s' if losses != 1 else ''}" if losses else ""


def _failure(dictionary: Dictionary, r: dict[str, Any]) -> str:
    code = r["failure_code"]
    failure = dictionary.failure(code)
    name = failure.name if failure is not None else "unknown failure"
    text = f": {r['failure_text']}" if r["failure_text"] else ""
    return f"{name} (code {code}){text}"


def run_status(args: argparse.Namespace, ctx: OperationContext) -> int:
    for line in describe_job(ctx.dictionary, job_status(ctx, parse_job_id(args.job_id))):
        ctx.out(line)
    return 0


def list_rows(dictionary: Dictionary, report: dict[str, Any]) -> list[str]:
    """TM[130,7] as a table with a header: state, progress, priority, model, times (UTC)."""
    rows = [("JOB", "STATE", "DONE", "PRIORITY", "MODEL", "SUBMITTED (UTC)", "STARTED", "ENDED")]
    columns = zip(
        report["job_ids"], report["states"], report["progress"], report["priorities"],
        report["models"], report["versions"], report["submitted_times"],
        report["started_times"], report["finished_times"], strict=True,
    )  # fmt: skip
    for job_id, state, progress, priority, model, version, submitted, started, ended in columns:
        rows.append((
            str(job_id), _enum(dictionary, "JobState", state), f"{progress}%", str(priority),
            f"{model} v{version}" if version else model, _clock(submitted, 0),
            _clock(started, submitted), _clock(ended, submitted),
        ))  # fmt: skip
    return table_lines(rows, right={0, 2, 3})  # numbers


def _clock(unix: int, day_of: int) -> str:
    """`2024-05-01 12:00:03`, or only `12:00:04` on the day of `day_of` (0: never)."""
    if not unix:
        return "-"
    when = dt.datetime.fromtimestamp(unix, dt.UTC)
    if day_of and when.date() == dt.datetime.fromtimestamp(day_of, dt.UTC).date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%Y-%m-%d %H:%M:%S")


def run_list(args: argparse.Namespace, ctx: OperationContext) -> int:
    report = ctx.exchange().query("JOB_LIST", {"limit": int(args.limit)}, reply="JOB_LIST_REPORT")
    ctx.out(
        f"{report['queued']} queued, {report['running']} running, {report['finished']} finished"
    )
    if report["job_ids"]:
        for line in list_rows(ctx.dictionary, report):
            ctx.out(f"  {line}")
    return 0


def run_cancel(args: argparse.Namespace, ctx: OperationContext) -> int:
    job_id = parse_job_id(args.job_id)
    ctx.exchange().request("JOB_CANCEL", {"job_id": job_id})
    ctx.out(f"job {job_id} cancelled")
    return 0


def _final_state(ctx: OperationContext, report: dict[str, Any]) -> int:
    """Print the job; 0 if it succeeded, CommandFailed naming its end otherwise."""
    for line in describe_job(ctx.dictionary, report):
        ctx.out(line)
    state = _enum(ctx.dictionary, "JobState", report["state"])
    if state == SUCCEEDED:
        return 0
    failure = f": {_failure(ctx.dictionary, report)}" if report["failure_code"] else ""
    raise CommandFailed(f"job {report['job_id']} ended {state}{failure}", None)


def queue_held(ctx: OperationContext) -> bool:
    """Whether the payload holds its queue (JOB_QUEUE_HOLD); False when the answer is lost."""
    hold = ctx.dictionary.parameter(HOLD_PARAMETER).id
    try:
        report = ctx.exchange().query(
            "PARAM_REPORT",
            {"ids": [hold]},
            reply="PARAM_VALUES",
            match=lambda v: any(item["id"] == hold for item in v["values"]),
        )
    except LinkTimeout:
        return False  # the wait goes on; only the explanation is missing
    return any(item["id"] == hold and item["value"] for item in report["values"])


def run_wait(args: argparse.Namespace, ctx: OperationContext) -> int:
    job_id = parse_job_id(args.job_id)
    limit = _wait_seconds(args)
    deadline = ctx.clock() + limit
    packets = ctx.link.subscribe()
    try:
        last_state = ""
        while True:
            try:
                report = job_status(ctx, job_id)
            except LinkTimeout as exc:
                # One lost answer is not the end of the wait: the next poll may get through.
                ctx.err(f"groundsw: {exc}; asking again")
                report = None
            if report is not None:
                state = _enum(ctx.dictionary, "JobState", report["state"])
                if state not in _RUNNING_STATES:
                    return _final_state(ctx, report)
                if state != last_state:
                    held = state == QUEUED and queue_held(ctx)
                    ctx.out(
                        f"job {job_id}: {state} {report['progress']}%"
                        + (f"; {HELD_TEXT}" if held else "")
                    )
                    last_state = state
            next_poll = ctx.clock() + POLL_INTERVAL_S
            ended = False
            while not ended and ctx.clock() < min(next_poll, deadline):
                try:
                    item = packets.get(timeout=0.1)
                except queue.Empty:
                    continue
                for received in [item, *drain(packets)]:
                    found = event_values(ctx.dictionary, received, FINAL_EVENTS)
                    if found is not None and found[1]["job_id"] == job_id:
                        ended = True
            if not ended and ctx.clock() >= deadline:
                # Asked again: the hold may have been set since the job was queued.
                held = last_state == QUEUED and queue_held(ctx)
                raise JobWaitTimeout(
                    f"job {job_id} is still {last_state or 'not reported'} after {limit:g} s"
                    + (f": {HELD_TEXT}" if held else "")
                )
    finally:
        ctx.link.unsubscribe(packets)


def run_result(args: argparse.Namespace, ctx: OperationContext) -> int:
    job_id = parse_job_id(args.job_id)
    report = job_status(ctx, job_id)
    state = _enum(ctx.dictionary, "JobState", report["state"])
    if state != SUCCEEDED or not report["result"]:
        raise CommandFailed(f"job {job_id} has no result: it is {state}", None)
    result = download_to(ctx, report["result"], args.out)
    expected = bytes(report["result_sha256"])
    result.check_is(f"job {job_id}'s result", report["result_size"], expected)
    ctx.out(f"job {job_id} result: {args.out}, {result.size} octets, SHA-256 {expected.hex()}")
    return 0
