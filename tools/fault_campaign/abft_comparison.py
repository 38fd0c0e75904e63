"""ABFT's own coverage of compute and weight faults, beside TMR's in the report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from flight.jobs.executor import reference_session
from flight.protection.faults import FaultModel
from tools import model_gen
from tools.fault_campaign.outcomes import Target

ABFT_SECTION = "abft"
ABFT_CALIBRATION_INPUTS = 32
# An SDC whose largest output change, relative to the largest output, exceeds this is counted
# apart: ABFT's threshold sits above rounding noise, so it cannot see the smallest changes.
ABFT_LARGE_CHANGE = 1e-3
ABFT_KINDS = ("layer outputs", "weights")


@dataclass(frozen=True, slots=True)
class AbftRow:
    """ABFT's trials of one fault model in one kind of fault (compute or weights)."""

    fault: FaultModel
    kind: str
    masked: int
    detected: int
    sdc: int
    sdc_large: int
    coverage: float

    @property
    def trials(self) -> int:
        """Trials of the row, every class."""
        return self.masked + self.detected + self.sdc


@dataclass(frozen=True, slots=True)
class AbftResult:
    """ABFT's coverage trials, or why there are none."""

    rows: tuple[AbftRow, ...] = ()
    threshold: float = 0.0
    margin: float = 0.0
    layers: int = 0
    skipped: int = 0
    unavailable: str = ""


def _abft_runner(model: onnx.ModelProto) -> Callable[[Any], Sequence[np.ndarray]]:
    """Runs a model as the payload's CPU sessions compute (prepacking off, one thread)."""
    session = reference_session(model_gen.model_bytes(model), 1)

    def run(feeds: Any) -> Sequence[np.ndarray]:
        return list(session.run(None, dict(feeds)))

    return run


def run_abft(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], trials: int, seed: int
) -> AbftResult:
    """ABFT's detection of compute faults (in checked layers' outputs) and weight faults, with
    flight/protection/abft/'s own coverage functions; unavailable when it offers none."""
    try:
        from flight.protection import abft
    except ImportError as exc:
        return AbftResult(unavailable=f"flight/protection/abft cannot be imported ({exc})")
    try:
        checked = abft.add_checksums(model)
        calibration = abft.calibrate(
            _abft_runner(checked.model),
            checked,
            abft.random_feeds(model, ABFT_CALIBRATION_INPUTS, seed),
        )
        rows = []
        for fault in FaultModel:
            for index, kind in enumerate(ABFT_KINDS):
                key = (len(Target), int(fault), index)
                fault_seed = int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1)[0])
                if kind == ABFT_KINDS[0]:
                    report = abft.fault_coverage(
                        checked, _abft_runner, feeds, fault, trials,
                        seed=fault_seed, threshold=calibration.threshold,
                    )  # fmt: skip
                else:
                    report = abft.weight_fault_coverage(
                        checked, _abft_runner, feeds, trials,
                        seed=fault_seed, threshold=calibration.threshold, fault=fault,
                    )  # fmt: skip
                counts = report.counts
                rows.append(
                    AbftRow(
                        fault,
                        kind,
                        masked=counts[abft.Outcome.MASKED],
                        detected=counts[abft.Outcome.DETECTED],
                        sdc=counts[abft.Outcome.SDC],
                        sdc_large=report.sdc_above(ABFT_LARGE_CHANGE),
                        coverage=report.coverage(),
                    )
                )
    except abft.AbftError as exc:
        return AbftResult(unavailable=f"ABFT cannot check this model: {exc}")
    return AbftResult(
        tuple(rows),
        calibration.threshold,
        calibration.margin,
        len(checked.layers),
        len(checked.skipped),
    )
