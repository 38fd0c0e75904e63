"""Functional-fault trials through the real processes: payload-flight under the bench's
supervisor on the emulated link, its inference worker, one FAULT_INJECT of a functional fault per
trial while TMR jobs queue, and what the fault cost (recovery, jobs, the link).

The fault kinds are data (`KINDS`): adding one is a row. Driven by tools/functional_campaign.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flight.jobs.executor import reference_session
from groundsw.transfer import Exchange, Uploader
from groundsw.uplink_security import UplinkSecurity
from groundsw.verification import CommandFailed
from hil.bench import BENCH_SUPERVISION, Bench
from hil.testapi import GroundTestApi, TestApiError
from spacelink.errors import LinkError
from spacelink.pus import EVENT_SERVICE
from spacelink.spacepacket import PusTm
from telemetry_defs.loader import default_dictionary
from telemetry_defs.model import (
    HOUSEKEEPING_REPORT,
    HOUSEKEEPING_SERVICE,
    CodecError,
    UnknownName,
)
from tests.harness import open_test_api
from tools.model_gen import mlp, model_bytes

log = logging.getLogger(__name__)

D = default_dictionary()
BAUD = 921600
# The HIL tests' small model (tests/hil/onboard.py): a few kB, milliseconds a run.
MODEL_SEED = 5
TINY_WIDTHS = (16, 32, 4)
INPUT_SEED = 1
INPUT_SHAPE = (3, 16)
MODEL_NAME = "tiny"
INPUT_FILE = "x.npy"

# How long a trial waits for each step before it records the step as not seen. A payload hang
# is found by the supervisor's watchdog: its time is added to the wait for the fault.
STRIKE_TIMEOUT_S = 60.0
BACK_TIMEOUT_S = 60.0
JOBS_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 60.0
POLL_S = 0.2

# What of the payload's housekeeping tells whether its uplink receives.
LINK_COUNTERS = frozenset(
    {"CLTUS_RECEIVED", "TC_FRAMES_ACCEPTED", "FARM_STATE", "FARM_VR", "AUTH_FRAMES_VERIFIED"}
)

JOB_STATE = D.enums["JobState"]
FINAL_STATES = frozenset(
    JOB_STATE.values[name] for name in ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT")
)
SUCCEEDED = JOB_STATE.values["SUCCEEDED"]


class CampaignError(Exception):
    """The campaign cannot go on: the bench did not start, or its supervisor gave up."""


@dataclass(frozen=True, slots=True)
class FaultKind:
    """One functional fault: its FaultTarget, the event that shows it struck (None: the end of
    the payload's process, as the bench's supervisor saw it) and the event that shows the
    compute back. A payload restart also needs COP-1 initiated again and a ping answered."""

    target: str
    struck: str | None
    back: str
    restarts_payload: bool = False


KINDS: tuple[FaultKind, ...] = (
    FaultKind("WORKER_CRASH", struck="WORKER_LOST", back="WORKER_STARTED"),
    FaultKind("WORKER_HANG", struck="WORKER_LOST", back="WORKER_STARTED"),
    FaultKind("SLOW_RUN", struck="WORKER_LOST", back="WORKER_STARTED"),
    FaultKind("PAYLOAD_CRASH", struck=None, back="PAYLOAD_STARTED", restarts_payload=True),
    FaultKind("PAYLOAD_HANG", struck=None, back="PAYLOAD_STARTED", restarts_payload=True),
    FaultKind("DISK_FULL", struck="STORAGE_HELD", back="STORAGE_RESUMED"),
)
KIND_BY_TARGET = {kind.target: kind for kind in KINDS}


def available_kinds() -> list[str]:
    """The kinds of `KINDS` this dictionary's FaultTarget has (others are still to come)."""
    targets = D.enums["FaultTarget"].values
    return [kind.target for kind in KINDS if kind.target in targets]


@dataclass(frozen=True, slots=True)
class TrialPlan:
    """One trial as the seed decided it: the kind, FAULT_INJECT's seed, and how many of the
    trial's jobs are submitted before the injection (the rest after it)."""

    number: int
    kind: str
    inject_seed: int
    jobs_before: int


@dataclass(frozen=True, slots=True)
class TrialResult:
    """What one trial measured; times in seconds from the FAULT_INJECT being sent, None when
    the step was not seen."""

    plan: TrialPlan
    jobs_before: int = 0  # as run: a payload fault queues every job before it
    refused: str = ""  # why FAULT_INJECT failed; empty: it was injected
    struck_s: float | None = None
    back_s: float | None = None
    first_job_s: float | None = None
    pings_ms: tuple[float, ...] = ()
    accepted: int = 0
    succeeded: int = 0
    bit_exact: int = 0
    requeued: int = 0
    reset_reason: str = ""  # PAYLOAD_STARTED's, after a payload fault
    loss_reason: str = ""  # WORKER_LOST's, after a worker fault
    restart_delay_ms: int | None = None  # WORKER_LOST's restart_in: the worker's backoff
    note: str = ""

    @property
    def lost(self) -> int:
        """Accepted jobs that did not end SUCCEEDED with a bit-exact result."""
        return self.accepted - self.bit_exact

    @property
    def recovered(self) -> bool:
        return self.back_s is not None


@dataclass(frozen=True, slots=True)
class Seen:
    """An event as the ground received it: when (monotonic) and its decoded arguments."""

    at: float
    values: dict[str, Any]


def await_event(
    api: GroundTestApi,
    name: str,
    since: float,
    timeout: float,
    match: Callable[[dict[str, Any]], bool] | None = None,
) -> Seen:
    """The first event `name` received at or after `since`; TestApiError after `timeout`."""
    wanted = D.event(name).name
    values: list[dict[str, Any]] = []

    def predicate(tm: PusTm) -> bool:
        if tm.service != EVENT_SERVICE:
            return False
        try:
            decoded = D.decode_tm(tm.service, tm.subtype, tm.source_data)
        except (CodecError, UnknownName):
            return False
        if decoded.name != wanted or (match is not None and not match(decoded.values)):
            return False
        values.append(decoded.values)
        return True

    item = api.await_tm(predicate, timeout=timeout, since=since, description=f"event {wanted}")
    return Seen(item.received_at, values[-1])


def ping_ms(api: GroundTestApi) -> float | None:
    """ARE_YOU_ALIVE's round trip to its completion report; None: no answer."""
    started = time.monotonic()
    try:
        api.command_and_assert("ARE_YOU_ALIVE")
    except TestApiError:
        return None
    return (time.monotonic() - started) * 1000


def fetch(api: GroundTestApi, name: str, download_id: int, timeout: float = 60.0) -> bytes | None:
    """A stored file by FILE_DOWNLOAD, from chunks received for this download only; None when
    it is refused, incomplete at `timeout` or its SHA-256 differs from TM[128,11]'s."""
    start, chunk = D.packets["FILE_DOWNLOAD_START"], D.packets["FILE_DOWNLOAD_CHUNK"]
    since = time.monotonic()
    record = api.command("FILE_DOWNLOAD", download_id=download_id, name=name, offset=0, length=0)

    def is_start(tm: PusTm) -> bool:
        if (tm.service, tm.subtype) != (start.service, start.subtype):
            return False
        values = D.decode_tm(tm.service, tm.subtype, tm.source_data).values
        return bool(values["download_id"] == download_id)

    try:
        header = api.decode(api.await_tm(is_start, since=since, timeout=timeout)).values
    except TestApiError:
        return None
    pieces: dict[int, bytes] = {}
    deadline = time.monotonic() + timeout
    while sum(map(len, pieces.values())) < header["size"]:
        if record.failure is not None or time.monotonic() > deadline:
            return None
        for item in api.tm_history(chunk.service, chunk.subtype):
            if item.received_at < since:
                continue  # an earlier download's
            values = api.decode(item).values
            if (
                values["download_id"] == download_id
                and zlib.crc32(values["data"]) == values["crc32"]
            ):
                pieces[values["offset"]] = values["data"]
        time.sleep(0.05)
    data = bytearray(header["size"])
    for offset, piece in pieces.items():
        data[offset : offset + len(piece)] = piece
    return bytes(data) if hashlib.sha256(data).digest() == header["sha256"] else None


class TrialRunner:
    """The payload on a bench with the model registered and the input uploaded; runs trials
    one after another on the same payload (and the same link session)."""

    def __init__(self, bench: Bench, api: GroundTestApi, golden: np.ndarray, jobs: int) -> None:
        self.bench = bench
        self.api = api
        self.golden = golden
        self.jobs = jobs
        self._download_id = 0

    # -- a trial --------------------------------------------------------------------------------

    def run(self, plan: TrialPlan) -> TrialResult:
        """Queue the trial's jobs around one injected fault; measure until every job ended."""
        kind = KIND_BY_TARGET[plan.kind]
        api = self.api
        api.clear_histories()  # each trial's waits look at its own telemetry only
        self._settle()
        # A payload fault takes the process away a moment after its report: the jobs wait in
        # the held queue before it, so that they are in the store when it goes (a restart
        # releases the hold). A worker or disk fault waits for a run: jobs on both sides.
        before = self.jobs if kind.restarts_payload else plan.jobs_before
        if kind.restarts_payload:
            self._hold(True)
        ids = self._submit(before)
        assert self.bench.supervisor is not None
        exits_before = len(self.bench.supervisor.exits)
        sent = time.monotonic()
        refused = self._inject(kind, plan.inject_seed)
        log.info(
            "trial %d: %s injected after %d jobs %s", plan.number, kind.target, before, refused
        )
        result = TrialResult(plan, jobs_before=before, refused=refused)
        if refused:
            if kind.restarts_payload:
                self._hold(False)
            ids += self._submit(self.jobs - before)
            return self._collect(result, ids, sent, struck_at=None)
        if not kind.restarts_payload:
            ids += self._submit(self.jobs - before)
        try:
            if kind.restarts_payload:
                result, struck_at = self._payload_recovery(result, sent, exits_before)
            else:
                result, struck_at = self._link_up_recovery(kind, result, sent)
        except (TestApiError, LinkError) as exc:
            result, struck_at = dataclasses.replace(result, note=_short(exc)), None
        if kind.restarts_payload and result.reset_reason == "":
            self._hold(False)  # no restart seen: let the held jobs run
        return self._collect(result, ids, sent, struck_at)

    def _link_up_recovery(
        self, kind: FaultKind, result: TrialResult, sent: float
    ) -> tuple[TrialResult, float | None]:
        """A fault the payload's process survives: its event, a ping meanwhile, its end."""
        assert kind.struck is not None
        struck = await_event(self.api, kind.struck, sent, STRIKE_TIMEOUT_S)
        ping = ping_ms(self.api)  # the link answers while the compute is away
        result = dataclasses.replace(
            result, struck_s=struck.at - sent, pings_ms=() if ping is None else (ping,)
        )
        if kind.struck == "WORKER_LOST":
            result = dataclasses.replace(
                result,
                loss_reason=D.enums["WorkerLossReason"].to_text(struck.values["reason"]),
                restart_delay_ms=struck.values["restart_in"],
            )
        back = await_event(self.api, kind.back, struck.at, BACK_TIMEOUT_S)
        return dataclasses.replace(result, back_s=back.at - sent), struck.at

    def _payload_recovery(
        self, result: TrialResult, sent: float, exits_before: int
    ) -> tuple[TrialResult, float | None]:
        """The payload's process ended, its supervisor started it again, and it answers."""
        supervisor = self.bench.supervisor
        assert supervisor is not None
        watchdog = self.bench.supervision.watchdog_s or 0.0
        deadline = time.monotonic() + STRIKE_TIMEOUT_S + watchdog
        while len(supervisor.exits) <= exits_before:
            if self.bench.flight_failure() is not None:
                raise CampaignError(
                    f"the bench's supervisor gave up: {self.bench.flight_failure()}"
                )
            if time.monotonic() > deadline:
                return dataclasses.replace(result, note="the payload's process did not end"), None
            time.sleep(POLL_S / 4)
        ended = supervisor.exits[exits_before]
        log.info("payload process %d ended: %s", ended.pid, ended)
        result = dataclasses.replace(result, struck_s=ended.at - sent)
        started = await_event(self.api, "PAYLOAD_STARTED", sent, BACK_TIMEOUT_S)
        log.info("PAYLOAD_STARTED %s", started.values)
        reason = D.enums["ResetReason"].to_text(started.values["reset_reason"])
        result = dataclasses.replace(result, reset_reason=reason)
        # The new process's FARM starts from V(R) = 0: initiate again, as an operator would.
        up = self.api.session.initiate()
        log.info("COP-1 initiated: %s", up)
        ping = ping_ms(self.api)
        if ping is None:
            # Seen once in about seventy restarts (tests/hil/test_functional_campaign.py, slow):
            # the uplink carried nothing after the restart. What the link said is logged, and
            # the ground tries once more as an operator would; the report says so.
            log.warning("no answer to the first ping after the restart: %s", self.diagnosis())
            self.api.session.initiate()
            ping = ping_ms(self.api)
            if ping is None:
                return dataclasses.replace(result, note="no answer to ARE_YOU_ALIVE"), started.at
            result = dataclasses.replace(
                result,
                note="first ping after the restart unanswered; answered after COP-1 "
                "was initiated again",
            )
        back = time.monotonic() - sent
        return dataclasses.replace(result, back_s=back, pings_ms=(ping,)), started.at

    def diagnosis(self) -> str:
        """The link as each side last told: the payload's uplink counters (its housekeeping),
        the ground session's and the emulator's, for a log line when the uplink fails."""
        counters: dict[str, Any] = {}
        for item in self.api.tm_history(HOUSEKEEPING_SERVICE, HOUSEKEEPING_REPORT):
            try:
                counters.update(self.api.decode(item).parameters)
            except (CodecError, UnknownName):
                continue
        payload = {
            name: value
            for name, value in counters.items()
            if name in LINK_COUNTERS or (name.startswith("DISCARDED_") and value)
        }
        uplink = self.bench.link.stats("uplink")
        return (
            f"payload {payload}; ground {self.api.session.stats}; emulated uplink "
            f"{uplink.octets_in} octets in, {uplink.octets_out} out, "
            f"{uplink.overflow_drops} dropped for overflow"
        )

    def _collect(
        self, result: TrialResult, ids: list[int], sent: float, struck_at: float | None
    ) -> TrialResult:
        """Wait until every job ended; download each result and compare it with the golden.
        The first job after the fault is the first succeeded at or after `struck_at`."""
        reports = self._wait_jobs(ids)
        first = None if struck_at is None else self._first_job_after(ids, struck_at)
        succeeded = [r for r in reports.values() if r["state"] == SUCCEEDED]
        exact = sum(self._bit_exact(r["result"]) for r in succeeded)
        return dataclasses.replace(
            result,
            first_job_s=None if first is None else first - sent,
            accepted=len(ids),
            succeeded=len(succeeded),
            bit_exact=exact,
            requeued=sum(r["attempts"] > 1 for r in reports.values()),
        )

    # -- steps ----------------------------------------------------------------------------------

    def _settle(self) -> None:
        """Before a trial: a worker is up (after a restart the worker starts in the background)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while not self.api.get_parameters("WORKER_UP")["WORKER_UP"]:
            if self.bench.flight_failure() is not None:
                raise CampaignError(
                    f"the bench's supervisor gave up: {self.bench.flight_failure()}"
                )
            if time.monotonic() > deadline:
                raise CampaignError(f"no inference worker up within {SETTLE_TIMEOUT_S:g} s")
            time.sleep(POLL_S)

    def _hold(self, held: bool) -> None:
        hold = D.parameter("JOB_QUEUE_HOLD").id
        self.api.command_and_assert("PARAM_SET", values=[{"id": hold, "value": held}])

    def _submit(self, count: int) -> list[int]:
        """`count` TMR jobs of the model on the input; their IDs (JOB_ACCEPTED)."""
        accepted = D.packets["JOB_ACCEPTED"]
        ids = []
        for _ in range(count):
            since = time.monotonic()
            self.api.command(
                "JOB_SUBMIT",
                model=MODEL_NAME,
                version=0,
                input=INPUT_FILE,
                priority=0,
                redundancy="TMR",
                deadline=0,
            )
            item = self.api.await_packet(accepted.service, accepted.subtype, since=since)
            ids.append(self.api.decode(item).values["job_id"])
        return ids

    def _inject(self, kind: FaultKind, seed: int) -> str:
        """FAULT_INJECT; empty when injected, else the failure's name (or why no answer)."""
        packet = D.packets["FAULT_INJECT_REPORT"]
        since = time.monotonic()
        record = self.api.command(
            "FAULT_INJECT", target=kind.target, fault="BIT", model="", version=0, seed=seed
        )
        try:
            self.api.await_packet(packet.service, packet.subtype, since=since, timeout=10)
        except TestApiError:
            failure = record.failure
            if failure is None or failure.failure_code is None:
                return "no FAULT_INJECT_REPORT"
            known = D.failure(failure.failure_code)
            return known.name if known is not None else f"failure {failure.failure_code}"
        return ""

    def _wait_jobs(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Every job's last report, once all ended or JOBS_TIMEOUT_S passed."""
        deadline = time.monotonic() + JOBS_TIMEOUT_S
        while True:
            reports = {job: self._job_report(job) for job in ids}
            if all(r["state"] in FINAL_STATES for r in reports.values()):
                return reports
            if time.monotonic() > deadline:
                log.warning("jobs not ended after %g s: %s", JOBS_TIMEOUT_S, reports)
                return reports
            time.sleep(POLL_S)

    def _job_report(self, job_id: int) -> dict[str, Any]:
        values: dict[str, Any] = self.api.query_command(
            "JOB_STATUS", "JOB_REPORT", job_id=job_id
        ).values
        return values

    def _first_job_after(self, ids: list[int], since: float) -> float | None:
        """When the first of `ids` was reported succeeded at or after `since` (monotonic)."""
        try:
            return await_event(
                self.api, "JOB_SUCCEEDED", since, 0.1, lambda v: v["job_id"] in ids
            ).at
        except TestApiError:
            return None

    def _bit_exact(self, name: str) -> bool:
        self._download_id = self._download_id % 0xFFFF + 1
        data = fetch(self.api, name, self._download_id)
        if data is None:
            return False
        result = np.load(io.BytesIO(data), allow_pickle=False)
        golden = self.golden
        return bool(
            result.dtype == golden.dtype
            and result.shape == golden.shape
            and result.tobytes() == golden.tobytes()
        )


def _short(exc: BaseException) -> str:
    """The first line of an error, for a report's note."""
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def golden_case() -> tuple[bytes, np.ndarray, np.ndarray]:
    """The model's octets, the job input and its golden output (the payload's CPU arithmetic)."""
    model = mlp(seed=MODEL_SEED, widths=TINY_WIDTHS)
    data = model_bytes(model)
    x = np.random.default_rng(INPUT_SEED).standard_normal(INPUT_SHAPE).astype(np.float32)
    golden = reference_session(data).run(None, {model.graph.input[0].name: x})[0]
    return data, x, np.asarray(golden)


def register(api: GroundTestApi, model: bytes, x: np.ndarray, workdir: Path) -> None:
    """Upload the model and the input and register the model, as `groundsw model upload` and
    `groundsw file upload` do (their uploader, their exchange)."""
    exchange = Exchange(api.session, D, timeout=60.0)
    uploader = Uploader(exchange, out=log.info)
    model_path, input_path = workdir / f"{MODEL_NAME}.onnx", workdir / INPUT_FILE
    model_path.write_bytes(model)
    np.save(input_path, x, allow_pickle=False)
    uploader.upload(model_path, model_path.name)
    uploader.upload(input_path, INPUT_FILE)
    values = {"file": model_path.name, "model": MODEL_NAME, "version": 1, "tolerance": 0.0}
    exchange.request("MODEL_REGISTER", values, reply="MODEL_REPORT")


@contextmanager
def payload_on_bench(log_dir: Path, jobs: int, watchdog_s: float) -> Iterator[TrialRunner]:
    """The payload under the bench's supervisor (watchdog `watchdog_s`, no start limit: the
    campaign restarts it on purpose), test commands enabled, its log in `log_dir`; the model
    registered and the input uploaded."""
    # The supervisor's start limit would end a campaign of payload faults (systemd's: 5 starts
    # in 60 s); everything else is the board's unit, the watchdog as given.
    policy = dataclasses.replace(
        BENCH_SUPERVISION, watchdog_s=watchdog_s, start_limit_burst=1_000_000
    )
    model, x, golden = golden_case()
    with tempfile.TemporaryDirectory(prefix="functional-campaign-") as tmp:
        config = Path(tmp) / "test-commands.toml"
        config.write_text("[protection]\ntest_commands = true\n")
        bench = Bench(
            Path(tmp) / "state",
            baud=BAUD,
            flight_log=log_dir / "payload.log",
            flight_args=["--config", str(config)],
            supervision=policy,
        )
        try:
            bench.start()
        except Exception as exc:  # BenchError, OSError: the bench's own words
            raise CampaignError(f"the bench did not start: {exc}") from None
        try:
            assert bench.key_file is not None
            security = UplinkSecurity.from_key_file(bench.key_file)
            with open_test_api(bench.ground_port, BAUD, security=security) as api:
                try:
                    register(api, model, x, Path(tmp))
                except (CommandFailed, LinkError) as exc:
                    raise CampaignError(f"the model could not be registered: {exc}") from None
                yield TrialRunner(bench, api, golden, jobs)
        finally:
            bench.stop()
