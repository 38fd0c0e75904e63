"""Service 130, inference jobs: submit, cancel, report, list.

JOB_SUBMIT checks everything it can before the job is stored (model registered, input stored
and fitting the model's signature, room in the queue), so a job that is accepted can only fail
for reasons that arise while it runs. Its TC completes when the job ends (see JobRunner).
"""

from __future__ import annotations

import os
from typing import Any

from flight.commanding import DEFERRED, CommandContext, named_failure
from flight.compute.job_compute import input_failure
from flight.files.upload_store import FileStoreError, UploadStore
from flight.jobs.model_check import InputMismatch, check_input_header, read_input_header
from flight.jobs.redundancy import Redundancy
from flight.jobs.registry import ModelRegistry, RegistryError
from flight.jobs.runner import STEP_QUEUED, JobRunner, pack_request
from flight.jobs.store import (
    InvalidTransition,
    Job,
    JobState,
    JobStoreError,
    RecordCorrupt,
    UnknownJob,
)
from flight.router import CommandRouter
from flight.services.files import store_failure
from flight.services.models import registry_failure
from telemetry_defs.model import Dictionary

# Jobs the queue holds at most: beyond, JOB_SUBMIT fails with QUEUE_FULL.
MAX_QUEUED_JOBS = 1000


def _seconds(t: float | None) -> int:
    return 0 if t is None else max(0, min(int(t), 0xFFFFFFFF))


class JobService:
    """TC[130,x] on the job store and the runner."""

    def __init__(
        self,
        dictionary: Dictionary,
        runner: JobRunner,
        registry: ModelRegistry,
        files: UploadStore,
        max_queued: int = MAX_QUEUED_JOBS,
    ) -> None:
        self._d = dictionary
        self._runner = runner
        self._store = runner.store
        self._registry = registry
        self._files = files
        self._max_queued = max_queued
        self._accepted = dictionary.packets["JOB_ACCEPTED"]
        self._report = dictionary.packets["JOB_REPORT"]
        self._list_report = dictionary.packets["JOB_LIST_REPORT"]

    def register(self, router: CommandRouter) -> None:
        d = self._d
        router.register_command(
            d.command("JOB_SUBMIT"), self._submit, check_start=self._check_submission
        )
        router.register_command(d.command("JOB_CANCEL"), self._cancel)
        router.register_command(d.command("JOB_STATUS"), self._status)
        router.register_command(d.command("JOB_LIST"), self._list)

    def _check_submission(self, args: dict[str, Any]) -> None:
        try:
            entry = self._registry.entry(args["model"], args["version"])
            # The header only: an input may be as large as the store's quota. The run reads
            # the whole file and checks it again.
            with self._files.open(args["input"]) as file:
                header = read_input_header(file, os.fstat(file.fileno()).st_size)
            check_input_header(entry.signature, header)
        except (RegistryError, FileStoreError, OSError) as exc:
            if isinstance(exc, RegistryError):
                raise registry_failure(self._d, exc) from None
            raise store_failure(self._d, exc) from None
        except InputMismatch as exc:
            raise named_failure(self._d, input_failure(exc), str(exc)) from None
        queued = self._store.counts()[JobState.QUEUED]
        if queued >= self._max_queued:
            raise named_failure(
                self._d, "QUEUE_FULL", f"{queued} jobs queued, at most {self._max_queued}"
            )

    def _submit(self, args: dict[str, Any], ctx: CommandContext) -> object:
        deadline = args["deadline"] or None
        try:
            # Version 0 (the highest) is recorded as the version checked at the start: the job
            # runs that one, and its reports say which it was.
            version = self._registry.entry(args["model"], args["version"]).version
        except RegistryError as exc:
            raise registry_failure(self._d, exc) from None
        with self._runner.submitting:
            try:
                job = self._store.submit(
                    args["model"],
                    args["input"],
                    args["priority"],
                    Redundancy(args["redundancy"]),
                    float(deadline) if deadline else None,
                    model_version=version,
                    request=pack_request(ctx.tc.request_id, ctx.tc.source_id, ctx.tc.ack_flags),
                )
            except JobStoreError as exc:
                raise named_failure(self._d, "JOB_STORE_FAILED", str(exc)) from None
            queued = self._store.counts()[JobState.QUEUED]
            ctx.reply_packet(self._accepted, {"job_id": job.job_id, "queued": queued})
            ctx.progress(STEP_QUEUED)
        self._runner.wake()
        return DEFERRED

    def _job(self, job_id: int) -> Job:
        try:
            return self._store.get(job_id)
        except UnknownJob as exc:
            raise named_failure(self._d, "UNKNOWN_JOB", str(exc)) from None
        except RecordCorrupt as exc:
            raise named_failure(self._d, "JOB_RECORD_CORRUPT", str(exc)) from None
        except JobStoreError as exc:
            raise named_failure(self._d, "JOB_STORE_FAILED", str(exc)) from None

    def _cancel(self, args: dict[str, Any], ctx: CommandContext) -> None:
        self._job(args["job_id"])
        try:
            self._runner.cancel(args["job_id"])
        except InvalidTransition as exc:
            raise named_failure(self._d, "JOB_ALREADY_FINISHED", str(exc)) from None
        except RecordCorrupt as exc:
            raise named_failure(self._d, "JOB_RECORD_CORRUPT", str(exc)) from None
        except JobStoreError as exc:
            raise named_failure(self._d, "JOB_STORE_FAILED", str(exc)) from None

    def _status(self, args: dict[str, Any], ctx: CommandContext) -> None:
        job = self._job(args["job_id"])
        ctx.reply_packet(
            self._report,
            {
                "job_id": job.job_id,
                "state": int(job.state),
                "progress": self._runner.progress
                if job.state is JobState.RUNNING and self._runner.current_job == job.job_id
                else job.progress,
                "priority": job.priority,
                "redundancy": int(job.redundancy),
                "attempts": min(job.attempts, 255),
                "losses": min(job.losses, 255),
                "runs": min(job.runs, 255),
                "disagreements": min(job.disagreements, 255),
                "deadline": _seconds(job.deadline_s),
                "submitted": _seconds(job.submitted_at),
                "started": _seconds(job.started_at),
                "finished": _seconds(job.finished_at),
                "failure_code": job.failure_code or 0,
                "result_size": job.result_size or 0,
                "result_sha256": job.result_sha256 or bytes(32),
                "model": job.model,
                "version": job.model_version,
                "input": job.input_file,
                "result": job.result_file or "",
                "failure_text": (job.failure_text or "").encode()[:255].decode(errors="ignore"),
            },
        )

    def _list(self, args: dict[str, Any], ctx: CommandContext) -> None:
        try:
            jobs = self._store.list(limit=args["limit"])
            counts = self._store.counts()
        except JobStoreError as exc:
            raise named_failure(self._d, "JOB_STORE_FAILED", str(exc)) from None
        ctx.reply_packet(
            self._list_report,
            {
                "queued": counts[JobState.QUEUED],
                "running": counts[JobState.RUNNING],
                "finished": sum(n for s, n in counts.items() if s not in (0, 1)),
                "job_ids": [j.job_id for j in jobs],
                "states": [int(j.state) for j in jobs],
                "priorities": [j.priority for j in jobs],
                "progress": [j.progress for j in jobs],
                "models": [j.model for j in jobs],
                "versions": [j.model_version for j in jobs],
                "submitted_times": [_seconds(j.submitted_at) for j in jobs],
                "started_times": [_seconds(j.started_at) for j in jobs],
                "finished_times": [_seconds(j.finished_at) for j in jobs],
            },
        )
