"""What a fault-injection evaluation found: each trial's outcome, and their tally for one fault
model."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from flight.protection.faults import FaultModel


class Outcome(enum.Enum):
    """What became of an injected fault."""

    MASKED = "masked"  # not detected, and the outputs are bit for bit the fault-free ones
    DETECTED = "detected"  # the residual went over the threshold (or NaN)
    SDC = "sdc"  # silent data corruption: the outputs differ and nothing was detected


@dataclass(frozen=True, slots=True)
class Trial:
    """One injected fault: where (`target` tensor, first flat `index`, `values` touched, `bits`
    changed), the residual it gave, its outcome, whether the outputs `changed` at all and the
    largest output change relative to the largest fault-free output (inf when non-finite)."""

    target: str
    index: int
    values: int
    bits: int
    residual: float
    outcome: Outcome
    changed: bool
    output_error: float


@dataclass(frozen=True, slots=True)
class CoverageReport:
    """The trials of one fault model and their tally."""

    fault: FaultModel
    threshold: float
    trials: tuple[Trial, ...]
    counts: dict[Outcome, int] = field(init=False)

    def __post_init__(self) -> None:
        counts = dict.fromkeys(Outcome, 0)
        for trial in self.trials:
            counts[trial.outcome] += 1
        object.__setattr__(self, "counts", counts)

    def share(self, outcome: Outcome) -> float:
        """The share of the trials with `outcome` (0 when there were none)."""
        return self.counts[outcome] / len(self.trials) if self.trials else 0.0

    def coverage(self) -> float:
        """Detected share of the faults that changed the outputs, which TMR would all detect
        (1.0 when none did)."""
        changed = [t for t in self.trials if t.changed]
        if not changed:
            return 1.0
        return sum(1 for t in changed if t.outcome is Outcome.DETECTED) / len(changed)

    def detected_intact(self) -> int:
        """Faults detected although the outputs came out intact (a re-run that was not needed)."""
        return sum(1 for t in self.trials if t.outcome is Outcome.DETECTED and not t.changed)

    def sdc_above(self, tolerance: float) -> int:
        """SDC trials whose relative output change exceeds `tolerance`."""
        return sum(
            1 for t in self.trials if t.outcome is Outcome.SDC and t.output_error > tolerance
        )

    def summary(self, tolerance: float = 1e-3) -> str:
        """One line: the tally, the SDC that moved an output by more than `tolerance` (relative
        to the largest output) and the coverage."""
        tally = ", ".join(f"{o.value} {self.counts[o]} ({self.share(o):.1%})" for o in Outcome)
        return (
            f"{self.fault.name}: {len(self.trials)} trials, {tally}; detected with intact"
            f" outputs {self.detected_intact()}; SDC with an output change > {tolerance:g}:"
            f" {self.sdc_above(tolerance)}; coverage of output-changing faults"
            f" {self.coverage():.2%}"
        )
