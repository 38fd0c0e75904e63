"""What a trial's outcome can be, where its fault goes, and the rules that classify it."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from flight.jobs.redundancy import Outputs, Redundancy, fingerprint
from flight.protection.faults import FaultModel


class CampaignError(Exception):
    """The campaign cannot run: the payload's clean result differs from the reference."""


class Outcome(enum.Enum):
    """The class of one trial."""

    MASKED = "masked"
    CORRECTED = "detected, corrected"
    UNCORRECTABLE = "detected, uncorrectable"
    SDC = "silent data corruption"


class Target(enum.Enum):
    """Where a trial's fault goes (the --only names)."""

    WEIGHTS = "weights"
    INPUTS = "inputs"
    OUTPUTS = "outputs"
    JOB_STORE = "jobstore"
    RESULT_FILES = "results"
    UPLINK = "uplink"


TARGET_TITLES = {
    Target.WEIGHTS: "Weight buffers",
    Target.INPUTS: "Input tensors",
    Target.OUTPUTS: "Replica outputs",
    Target.JOB_STORE: "Job-store records",
    Target.RESULT_FILES: "Result files",
    Target.UPLINK: "Uplink frames",
}

SCRUB_ONLY = "scrub pass alone"
STORE_READ = "record check on read"
STORE_REOPEN = "check at reopen"
STORE_FILE = "file octets, reopen"
_MODES = tuple(mode.name for mode in Redundancy)
PROTECTIONS: dict[Target, tuple[str, ...]] = {
    Target.WEIGHTS: (*_MODES, SCRUB_ONLY),
    Target.INPUTS: _MODES,
    Target.OUTPUTS: _MODES,
    Target.JOB_STORE: (STORE_READ, STORE_REOPEN, STORE_FILE),
    Target.RESULT_FILES: ("SHA-256",),
    Target.UPLINK: ("BCH + FECF + COP-1",),
}


# -- classification ---------------------------------------------------------------------------


def classify(delivered: bool, correct: bool, detected: bool) -> Outcome:
    """The class of a trial: what the system delivered (a job's accepted result, a download,
    the weights after a scrub pass), whether it equals the fault-free one, whether a check
    reported the fault. Nothing delivered means a check refused it: detected, uncorrectable.
    A wrong delivery is SDC even when some check fired: the error still got through."""
    if not delivered:
        return Outcome.UNCORRECTABLE
    if not correct:
        return Outcome.SDC
    return Outcome.CORRECTED if detected else Outcome.MASKED


def classify_frame(received: Sequence[bytes], sent: Sequence[bytes], corrected: int) -> Outcome:
    """An uplink trial: a rejected frame is retransmitted by COP-1 (detected, corrected), one
    accepted after BCH correction is corrected, an identical one untouched is masked, and an
    accepted frame with other packets is SDC."""
    if list(received) == list(sent):
        return Outcome.CORRECTED if corrected else Outcome.MASKED
    if not received:
        return Outcome.CORRECTED
    return Outcome.SDC


def same_outputs(a: Outputs, b: Outputs) -> bool:
    """Bit for bit: the same output names, dtypes, shapes and bytes."""
    return a.keys() == b.keys() and all(fingerprint(a[k]) == fingerprint(b[k]) for k in a)


def job_outcome(outputs: Outputs | None, golden: Outputs, detected: bool) -> Outcome:
    """A job's class from its accepted outputs (None: the job failed) and the golden ones."""
    return classify(
        outputs is not None, outputs is not None and same_outputs(outputs, golden), detected
    )


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrialResult:
    """One trial's class, and a fact some targets count beside it (FLAG_COLUMNS)."""

    outcome: Outcome
    flag: bool = False


# What the flag of a trial says, for the targets that set it.
FLAG_COLUMNS = {
    Target.WEIGHTS: "Found by one scrub pass",
    Target.UPLINK: "Frames rejected (COP-1 retransmits)",
    Target.JOB_STORE: "Store would not open",
}


@dataclass
class Cell:
    """The trials of one fault model against one target under one protection."""

    target: Target
    fault: FaultModel
    protection: str
    counts: Counter[Outcome] = field(default_factory=Counter)
    flagged: int = 0
    seconds: float = 0.0

    @property
    def trials(self) -> int:
        """Trials counted so far."""
        return sum(self.counts.values())

    def add(self, result: TrialResult) -> None:
        """Count one trial's class and flag."""
        self.counts[result.outcome] += 1
        if result.flag:
            self.flagged += 1
