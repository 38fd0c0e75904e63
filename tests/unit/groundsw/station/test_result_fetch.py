"""The station fetches the results of the jobs that finished, by itself: a sweep lists the
jobs, settles those it does not know, downloads every result not on the ground yet, checks it
against the job's SHA-256 and size, and fetches nothing twice."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from groundsw.station import result_fetch
from groundsw.station.pass_log import PASS_LOG_FILE, PassLog
from groundsw.station.result_fetch import MAX_FETCH_FAILURES, ResultFetcher, ids_to_ask
from telemetry_defs.loader import default_dictionary
from tests.unit.groundsw.fake_payload import FakePayload

D = default_dictionary()
STATE = D.enums["JobState"].values


class JobsPayload(FakePayload):
    """The fake payload with a job list: newest first, at most `limit`."""

    def do_job_list(self, v: dict[str, Any]) -> tuple[str, str] | None:
        jobs = [self.jobs[j] for j in sorted(self.jobs, reverse=True)[: v["limit"]]]
        self.tm("JOB_LIST_REPORT", {
            "queued": 0, "running": 0, "finished": len(jobs),
            "job_ids": [j["job_id"] for j in jobs], "states": [j["state"] for j in jobs],
            "priorities": [j["priority"] for j in jobs], "progress": [j["progress"] for j in jobs],
            "models": [j["model"] for j in jobs], "versions": [j["version"] for j in jobs],
            "submitted_times": [j["submitted"] for j in jobs],
            "started_times": [j["started"] for j in jobs],
            "finished_times": [j["finished"] for j in jobs],
        })  # fmt: skip
        return None

    def job(self, job_id: int, state: str, result: bytes | None = None) -> None:
        """A job in `state`; one that succeeded stores `result` as job-<ID>.npy."""
        name = f"job-{job_id}.npy" if result is not None else ""
        if result is not None:
            self.files[name] = result
        self.jobs[job_id] = {
            "job_id": job_id, "state": STATE[state], "progress": 100, "priority": 100,
            "redundancy": 0, "attempts": 1, "losses": 0, "runs": 1, "disagreements": 0,
            "deadline": 0, "submitted": 1_700_000_000, "started": 1_700_000_001,
            "finished": 1_700_000_002 if state != "RUNNING" else 0, "failure_code": 0,
            "result_size": len(result or b""),
            "result_sha256": hashlib.sha256(result).digest() if result else bytes(32),
            "model": "cnn-a", "version": 1, "input": f"image-{job_id}.npy", "result": name,
            "failure_text": "",
        }  # fmt: skip


class Client:
    """A client end on the fake payload (closing it changes nothing)."""

    def __init__(self, payload: FakePayload) -> None:
        self.payload = payload

    def __getattr__(self, name: str) -> Any:
        return getattr(self.payload, name)

    def close(self) -> None:
        self.closed = True


def npy(value: float) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.full((1, 10), value, dtype=np.float32))
    return buffer.getvalue()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[PassLog]:
    with PassLog(tmp_path / PASS_LOG_FILE) as opened:
        yield opened


def fetcher(
    payload: JobsPayload, log: PassLog, tmp_path: Path, up: list[bool] | None = None
) -> ResultFetcher:
    """A fetcher of `payload`'s results into tmp_path/results, in pass 3 while `up[0]`."""
    link_up = up if up is not None else [True]
    return ResultFetcher(
        "fm1",
        log,
        D,
        tmp_path / "results",
        921600,
        new_client=lambda label: Client(payload),  # type: ignore[arg-type,return-value]
        takes_commands=lambda: link_up[0],
        contact=lambda: 3,
        parallel=1,  # the fake payload answers on the caller's thread: one at a time
        request_timeout_s=5.0,
    )


def pass_ends_at(payload: JobsPayload, command: str, up: list[bool]) -> None:
    """The pass ends (`up[0]` false) as `payload` answers `command` the next time, once."""
    handler = "do_" + command.lower()
    real = getattr(payload, handler)

    def answer_then_end(v: dict[str, Any]) -> tuple[str, str] | None:
        setattr(payload, handler, real)
        found = real(v)
        up[0] = False
        return found

    setattr(payload, handler, answer_then_end)


def downloads(payload: FakePayload) -> list[str]:
    return [v["name"] for name, v in payload.sent if name == "FILE_DOWNLOAD"]


def test_a_sweep_fetches_each_result_once_checked_and_settles_the_rest(
    tmp_path: Path, log: PassLog
) -> None:
    payload = JobsPayload()
    payload.job(1, "SUCCEEDED", npy(1.0))
    payload.job(2, "FAILED")
    payload.job(3, "RUNNING")
    payload.job(4, "SUCCEEDED", npy(4.0))
    fetch = fetcher(payload, log, tmp_path)
    outcome = fetch.sweep()
    assert (outcome.listed, outcome.fetched, outcome.left) == (4, 2, 0)
    assert (tmp_path / "results" / "job-1.npy").read_bytes() == npy(1.0)
    assert (tmp_path / "results" / "job-4.npy").read_bytes() == npy(4.0)
    one = log.job(1)
    assert one is not None and one.contact == 3 and one.input == "image-1.npy"
    assert log.contacts() == []  # the contact's own record is the pass operations' business
    assert log.unsettled() == [3]
    # The job that failed before it was first heard of: what it ran was asked too, once.
    two = log.job(2)
    assert two is not None and (two.state, two.model, two.input) == ("FAILED", "cnn-a",
                                                                    "image-2.npy")  # fmt: skip
    assert log.unnamed() == []

    # Job 3 ends; the next sweep fetches its result and nothing again.
    payload.job(3, "SUCCEEDED", npy(3.0))
    outcome = fetch.sweep()
    assert outcome.fetched == 1
    assert sorted(downloads(payload)) == ["job-1.npy", "job-3.npy", "job-4.npy"]
    assert fetch.sweep().fetched == 0 and len(downloads(payload)) == 3
    assert log.wanted() == [] and log.unsettled() == []
    statuses = [v["job_id"] for name, v in payload.sent if name == "JOB_STATUS"]
    assert sorted(statuses) == [1, 2, 3, 4]  # each once: its result, or what it ran


def test_a_result_that_is_not_the_jobs_is_discarded_and_given_up_after_some_tries(
    tmp_path: Path, log: PassLog
) -> None:
    payload = JobsPayload()
    payload.job(1, "SUCCEEDED", npy(1.0))
    payload.files["job-1.npy"] = npy(666.0)  # the stored file is not what the job made
    fetch = fetcher(payload, log, tmp_path)
    for _ in range(MAX_FETCH_FAILURES + 2):
        assert fetch.sweep().fetched == 0
    record = log.job(1)
    assert record is not None and record.path is None
    assert record.failures == MAX_FETCH_FAILURES and "is not job 1's result" in str(
        record.last_error
    )
    assert len(downloads(payload)) == MAX_FETCH_FAILURES
    assert not (tmp_path / "results" / "job-1.npy").exists()


def test_nothing_is_asked_while_the_link_is_down_and_the_work_is_left(
    tmp_path: Path, log: PassLog
) -> None:
    payload = JobsPayload()
    payload.job(1, "SUCCEEDED", npy(1.0))
    up = [True]
    fetch = fetcher(payload, log, tmp_path, up)
    pass_ends_at(payload, "JOB_LIST", up)  # right after the list
    outcome = fetch.sweep()
    assert outcome.fetched == 0 and outcome.left == 1
    assert downloads(payload) == []


def test_jobs_beyond_a_full_list_and_unsettled_ones_are_asked_one_by_one() -> None:
    listed = range(110, 10, -1)  # the newest 100 of 110 jobs
    assert ids_to_ask(3, listed, 100, unsettled=[2, 50]) == [2, *range(4, 11)]
    assert ids_to_ask(3, range(20, 10, -1), 100, unsettled=[]) == []  # not full: all shown
    assert ids_to_ask(0, [], 100, unsettled=[7]) == [7]


def test_a_list_full_of_newer_jobs_makes_the_sweep_ask_for_the_older_ones(
    tmp_path: Path, log: PassLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(result_fetch, "LIST_LIMIT", 2)
    payload = JobsPayload()
    for job_id in range(1, 6):
        payload.job(job_id, "SUCCEEDED", npy(float(job_id)))
    fetch = fetcher(payload, log, tmp_path)
    outcome = fetch.sweep()
    assert outcome.asked == 3 and outcome.fetched == 5
    assert sorted(downloads(payload)) == [f"job-{n}.npy" for n in range(1, 6)]


def test_a_request_out_when_the_pass_ends_is_given_up_at_once_and_left_for_the_next(
    tmp_path: Path, log: PassLog
) -> None:
    payload = JobsPayload()
    payload.job(1, "SUCCEEDED", npy(1.0))
    up = [True]
    fetch = fetcher(payload, log, tmp_path, up)  # requests time out after 5 s
    pass_ends_at(payload, "JOB_STATUS", up)
    payload.lost_answers["JOB_STATUS"] = 1  # the answer went with the pass
    started = time.monotonic()
    outcome = fetch.sweep()
    assert time.monotonic() - started < 1.0
    assert outcome.fetched == 0 and outcome.left == 1
    up[0] = True
    assert fetch.sweep().fetched == 1
