"""Trials of faults in a job store's records and file."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from flight.jobs.redundancy import Redundancy
from flight.jobs.runner import result_file_name
from flight.jobs.store import JOBS_DB_FILE, Job, JobStore, JobStoreError
from flight.protection.faults import FaultModel, inject_bytes
from flight.protection.upsets import Upset, UpsetLocation, UpsetLog
from telemetry_defs.loader import default_dictionary
from tools.fault_campaign.outcomes import (
    STORE_FILE,
    STORE_READ,
    CampaignError,
    Outcome,
    TrialResult,
    classify,
)
from tools.fault_campaign.payload import INPUT_FILE, MODEL_NAME

# The payload's clock while the store's records are made: records are the same in every run.
STORE_CLOCK_S = 1_800_000_000.0


def _store_clock() -> float:
    return STORE_CLOCK_S


class JobStoreTrials:
    """A job store holding a job in each kind of state; every trial starts from its file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.upsets = UpsetLog()
        self.found: list[Upset] = []
        self.upsets.subscribe(self.found.append)
        # Errors of other types than JobStoreError that got out of the store, by where.
        self.escaped: Counter[str] = Counter()
        directory = root / "made"
        directory.mkdir(parents=True)
        store = JobStore(directory / JOBS_DB_FILE, _store_clock, self.upsets)
        try:
            self.expected = self._fill(store)
        finally:
            store.close()
        self.pristine = (directory / JOBS_DB_FILE).read_bytes()
        if self.found:
            raise CampaignError("the fault-free job store reported upsets")

    @staticmethod
    def _fill(store: JobStore) -> dict[int, Job]:
        failure = default_dictionary().failure_named("VOTE_FAILED").code
        ids = [
            store.submit(MODEL_NAME, INPUT_FILE, priority, Redundancy.TMR, deadline, request=b"r")
            .job_id
            for priority, deadline in ((5, 600.0), (9, None), (0, 3600.0), (200, 60.0))
        ]  # fmt: skip
        for job_id in ids[1:]:
            store.mark_running(job_id)
        store.mark_succeeded(
            ids[2], result_file_name(ids[2], 1), bytes(range(32)), result_size=168, runs=3
        )
        store.mark_failed(ids[3], failure, "TMR: runs 1, 2 and 3 all differ", runs=3)
        return {job_id: store.get(job_id) for job_id in ids}

    def _fresh_file(self, data: bytes) -> Path:
        """The store's file alone in a new directory (a rebuild leaves damaged copies)."""
        directory = self.root / "trial"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        path = directory / JOBS_DB_FILE
        path.write_bytes(data)
        return path

    def trial(self, fault: FaultModel, protection: str, rng: np.random.Generator) -> TrialResult:
        """A fault in one stored field of one record (or in the file's octets); then the read
        or the reopen; every job the store gives back compared with what was committed."""
        self.found.clear()
        if protection == STORE_FILE:
            data = bytearray(self.pristine)
            inject_bytes(data, fault, rng)
            path = self._fresh_file(bytes(data))
        else:
            path = self._fresh_file(self.pristine)
            store = JobStore(path, _store_clock, self.upsets)
            try:
                self._corrupt_record(store, fault, rng)
                if protection == STORE_READ:
                    return self._read_back(store)
            finally:
                store.close()
        try:
            store = JobStore(path, _store_clock, self.upsets)
        except JobStoreError:
            return TrialResult(Outcome.UNCORRECTABLE, flag=True)
        except Exception as exc:  # the store's contract is JobStoreError: counted for the report
            self.escaped[f"{type(exc).__name__} from JobStore()"] += 1
            return TrialResult(Outcome.UNCORRECTABLE, flag=True)
        try:
            return self._read_back(store)
        finally:
            store.close()

    def _corrupt_record(self, store: JobStore, fault: FaultModel, rng: np.random.Generator) -> None:
        for _ in range(100):
            job_id = sorted(self.expected)[int(rng.integers(len(self.expected)))]
            sites = [site for site in store.record_sites(job_id) if site.octets >= 4]
            sizes = np.array([site.octets for site in sites], dtype=np.float64)
            site = sites[int(rng.choice(len(sites), p=sizes / sizes.sum()))]
            try:
                store.corrupt_record(site, lambda octets: inject_bytes(octets, fault, rng))
                return
            except ValueError:
                continue  # a value SQLite cannot store (a NaN in a NOT NULL real): draw again
        raise CampaignError(f"no {fault.name} fault could be stored in 100 draws")

    def _read_back(self, store: JobStore) -> TrialResult:
        delivered = correct = True
        for job_id, expected in self.expected.items():
            try:
                job = store.get(job_id)
            except JobStoreError:
                delivered = False
                continue
            except Exception as exc:  # as at open: counted for the report
                self.escaped[f"{type(exc).__name__} from JobStore.get"] += 1
                delivered = False
                continue
            correct = correct and job == expected
        detected = any(u.location is UpsetLocation.JOB_STORE for u in self.found)
        return TrialResult(classify(delivered, correct, detected or not delivered))
