"""The station fetches the payload's results by itself: at the start of each pass (and when a
job's success is heard during one), it asks for the job list, settles what it does not know
(jobs older than the list shows, jobs not final when last heard of: one JOB_STATUS each), and
downloads the result of every job that succeeded and whose result is not on the ground yet,
checked against the SHA-256 and size the job reports, into `results/` beside the archive. The
ledger is the pass log's job table (`pass_log.py`), so nothing is fetched twice, across passes
and station restarts alike; a download cut by the end of a pass resumes where it stopped.

Several jobs are settled at once (`parallel` workers, each a client of the link with its own
source ID): a pass is short, and each request waits a round trip.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from groundsw.session import CommandRecord, PayloadLink, ReceivedTm
from groundsw.station.pass_log import SUCCEEDED, PassLog, PassLogError
from groundsw.transfer import (
    Downloader,
    Exchange,
    GroundInputError,
    check_file_name,
)
from groundsw.verification import CommandFailed
from spacelink.errors import LinkError
from spacelink.spacepacket import AckFlags
from telemetry_defs.model import Dictionary

log = logging.getLogger(__name__)

LIST_LIMIT = 100  # the most JOB_LIST reports
RESULTS_DIR = "results"
# A result whose fetch fails this often for a reason of its own (not the link's) is left.
MAX_FETCH_FAILURES = 3
# While the link is up: another sweep this long after one that left work undone, and at least
# this often in any case (a job may end without its event being heard).
RETRY_S = 1.0
SWEEP_INTERVAL_S = 30.0
FINAL_STATES = frozenset({SUCCEEDED, "FAILED", "CANCELLED", "TIMED_OUT"})

Clock = Callable[[], float]


class ClientEnd(PayloadLink, Protocol):
    """A client's end of the link that is closed after use (`owned_link.ClientLink`)."""

    def close(self) -> None: ...


class PassEnded(LinkError):
    """The link went down (the pass is over) with a request of the fetcher out."""


class WhilePassLasts:
    """A client's end that sends nothing, and says the link failed, once the pass is over: a
    request out when the link goes is given up at once rather than after its timeout, and the
    worker is free when the next pass begins (what it had is asked again then)."""

    def __init__(self, client: ClientEnd, takes_commands: Callable[[], bool]) -> None:
        self._client = client
        self._up = takes_commands
        self.source_id = client.source_id

    @property
    def error(self) -> BaseException | None:
        if self._client.error is not None:
            return self._client.error
        return None if self._up() else PassEnded("the pass ended")

    @property
    def max_packet_octets(self) -> int:
        return self._client.max_packet_octets

    def command(
        self, service: int, subtype: int, data: bytes = b"", ack: AckFlags = AckFlags.ALL
    ) -> CommandRecord:
        if not self._up():
            raise PassEnded("the pass ended: nothing more is sent before the next")
        return self._client.command(service, subtype, data, ack)

    def subscribe(self) -> queue.Queue[ReceivedTm]:
        return self._client.subscribe()

    def unsubscribe(self, handle: object) -> None:
        self._client.unsubscribe(handle)


def ids_to_ask(
    before: int, listed: Iterable[int], limit: int, unsettled: Iterable[int]
) -> list[int]:
    """The jobs to ask about one by one after a job list: those older than a full list shows
    and newer than any heard of `before` (more jobs were submitted than one list holds), and
    those not final when last heard of that the list no longer shows. Job IDs count up from 1."""
    shown = set(listed)
    ask: set[int] = set()
    if shown and len(shown) >= limit:
        ask.update(range(before + 1, min(shown)))
    ask.update(j for j in unsettled if j not in shown)
    return sorted(ask)


@dataclass
class SweepOutcome:
    """What one sweep did."""

    listed: int = 0
    asked: int = 0
    fetched: int = 0
    octets: int = 0
    left: int = 0  # jobs to settle or fetch that it did not get to (the link went, errors)


class ResultFetcher:
    """Fetches one payload's results (see the module's docstring). `new_client` gives a new
    end of the link for a worker; `takes_commands` says whether the link is up; `contact` the
    number of the pass under way (None between passes)."""

    def __init__(
        self,
        name: str,
        pass_log: PassLog,
        dictionary: Dictionary,
        results_dir: Path,
        baud: int,
        *,
        new_client: Callable[[str], ClientEnd],
        takes_commands: Callable[[], bool],
        contact: Callable[[], int | None],
        parallel: int,
        request_timeout_s: float,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.name = name
        self.log = pass_log
        self.dictionary = dictionary
        self.results_dir = results_dir
        self.baud = baud
        self._new_client = new_client
        self._takes_commands = takes_commands
        self._contact = contact
        self.parallel = parallel
        self.request_timeout_s = request_timeout_s
        self._clock = clock
        self._wall = wall
        self._states = dictionary.enums["JobState"]
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"results-{name}", daemon=True)

    # -- lifetime -----------------------------------------------------------------------------

    def start(self) -> ResultFetcher:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(self.request_timeout_s + 5.0)

    def wake(self) -> None:
        """Sweep soon: a pass began, or a job's end was heard."""
        self._wake.set()

    def _run(self) -> None:
        next_sweep = self._clock() + SWEEP_INTERVAL_S
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_sweep - self._clock()))
            self._wake.clear()
            if self._stop.is_set():
                return
            next_sweep = self._clock() + SWEEP_INTERVAL_S
            if not self._takes_commands():
                continue
            try:
                outcome = self.sweep()
            except (LinkError, CommandFailed, PassLogError) as exc:
                log.warning("%s: results not fetched: %s", self.name, exc)
                next_sweep = self._clock() + RETRY_S
                continue
            except Exception:  # fetching must outlive any one failure
                log.exception("%s: fetching results failed", self.name)
                next_sweep = self._clock() + RETRY_S
                continue
            if outcome.left:
                next_sweep = self._clock() + RETRY_S

    # -- one sweep ----------------------------------------------------------------------------

    def sweep(self) -> SweepOutcome:
        """List the jobs, settle what is unknown and fetch what is wanted (on this thread).
        LinkError, CommandFailed when the list itself cannot be had."""
        outcome = SweepOutcome()
        before = self.log.highest_job()
        client = self._new_client("results (list)")
        try:
            exchange = Exchange(client, self.dictionary, self.request_timeout_s, self._clock)
            report = exchange.query("JOB_LIST", {"limit": LIST_LIMIT}, reply="JOB_LIST_REPORT")
        finally:
            client.close()
        listed = list(report["job_ids"])
        outcome.listed = len(listed)
        for job_id, state, finished in zip(
            listed, report["states"], report["finished_times"], strict=True
        ):
            name = self._states.to_text(state)
            self.log.note_job(int(job_id), name, name in FINAL_STATES, float(finished))
        ask = ids_to_ask(before, listed, LIST_LIMIT, self.log.unsettled())
        wanted = [
            r.job_id
            for r in (*self.log.wanted(), *self.log.unnamed())
            if r.failures < MAX_FETCH_FAILURES
        ]
        work = sorted(set(ask) | set(wanted))
        outcome.asked = len(ask)
        if not work:
            return outcome
        todo: queue.Queue[int] = queue.Queue()
        for job_id in work:
            todo.put(job_id)
        lock = threading.Lock()
        workers = [
            threading.Thread(
                target=self._work, args=(todo, outcome, lock), name=f"results-{self.name}-{n}"
            )
            for n in range(min(self.parallel, len(work)))
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        left = {todo.get_nowait() for _ in range(todo.qsize())}
        left.update(r.job_id for r in self.log.wanted() if r.failures < MAX_FETCH_FAILURES)
        outcome.left = len(left)
        if outcome.fetched or outcome.left:
            log.info(
                "%s: %d results fetched (%d octets)%s",
                self.name,
                outcome.fetched,
                outcome.octets,
                f"; {outcome.left} left for later" if outcome.left else "",
            )
        return outcome

    def _work(self, todo: queue.Queue[int], outcome: SweepOutcome, lock: threading.Lock) -> None:
        client = self._new_client("results")
        try:
            link = WhilePassLasts(client, self._takes_commands)
            exchange = Exchange(link, self.dictionary, self.request_timeout_s, self._clock)
            downloader = Downloader(exchange, lambda line: log.debug("%s", line), self.baud)
            while self._takes_commands() and not self._stop.is_set():
                try:
                    job_id = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    octets = self._settle(job_id, exchange, downloader)
                except (LinkError, PassLogError) as exc:
                    # The link's fault (most often the pass ending): not the result's.
                    log.info("%s: job %d not settled: %s", self.name, job_id, exc)
                    todo.put(job_id)
                    return
                except (CommandFailed, GroundInputError, OSError) as exc:
                    log.warning("%s: job %d's result not fetched: %s", self.name, job_id, exc)
                    self.log.fetch_failed(job_id, str(exc))
                    continue
                if octets is not None:
                    with lock:
                        outcome.fetched += 1
                        outcome.octets += octets
        finally:
            client.close()

    def _settle(self, job_id: int, exchange: Exchange, downloader: Downloader) -> int | None:
        """Ask about job `job_id` if need be, and fetch its result if it has one to fetch; the
        result's size when fetched."""
        record = self.log.job(job_id)
        unknown_result = record is not None and record.state == SUCCEEDED and not record.sha256
        if record is None or not record.final or unknown_result or not record.model:
            report = exchange.query(
                "JOB_STATUS",
                {"job_id": job_id},
                reply="JOB_REPORT",
                match=lambda v: v["job_id"] == job_id,
            )
            self._note(job_id, report)
            record = self.log.job(job_id)
        if record is None or not record.wanted:
            return None
        name = check_file_name(record.result, "result file name")
        path = self.results_dir / name
        self.results_dir.mkdir(parents=True, exist_ok=True)
        result = downloader.download(name, path)
        result.check_is(f"job {job_id}'s result", record.size, bytes.fromhex(record.sha256))
        contact = self._contact()
        self.log.fetched(job_id, path, self._wall(), contact)
        if contact is not None:
            self.log.add_result(contact, result.size)
        log.info("%s: job %d's result fetched: %s, %d octets", self.name, job_id, path, result.size)
        return result.size

    def _note(self, job_id: int, report: dict[str, Any]) -> None:
        state = self._states.to_text(report["state"])
        self.log.note_job(job_id, state, state in FINAL_STATES, float(report["finished"]))
        self.log.note_run(job_id, report["model"], int(report["version"]), report["input"])
        if state == SUCCEEDED and report["result"]:
            sha = bytes(report["result_sha256"]).hex()
            self.log.note_result(job_id, report["result"], int(report["result_size"]), sha)
