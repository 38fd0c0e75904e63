"""The threshold a residual is held to: the run-time check against it, and its calibration
from the residuals of fault-free runs on seeded inputs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto

from flight.protection.abft.checked_model import AbftError, AbftModel, Runner
from flight.protection.abft.graph_info import graph_inputs

#: Threshold = margin x the largest healthy residual of the calibration: 8 is three bits of
#: headroom over the rounding noise seen, for inputs unlike the calibration's.
DEFAULT_MARGIN = 8.0
#: Floor of a layer's magnitude, so that an all-zero layer (a black image) gives 0, not 0/0.
TINY_MAGNITUDE = 1e-30


def check(residual: float | np.ndarray, threshold: float) -> bool:
    """True when a run passed its checks: every residual at or under `threshold` (NaN fails)."""
    return bool(np.all(np.asarray(residual, dtype=np.float64) <= threshold))


def largest(residual: float | np.ndarray) -> float:
    """The largest value of a residual, NaN when any is NaN."""
    values = np.asarray(residual, dtype=np.float64)
    return float("nan") if np.isnan(values).any() else float(values.max(initial=0.0))


@dataclass(frozen=True, slots=True)
class Calibration:
    """Threshold = `margin` x `healthy_max`, the largest residual over `runs` healthy runs."""

    threshold: float
    healthy_max: float
    margin: float
    runs: int


def calibrate(
    run: Runner,
    abft: AbftModel,
    feeds: Iterable[Mapping[str, np.ndarray]],
    margin: float = DEFAULT_MARGIN,
) -> Calibration:
    """The threshold from the residuals of `run` (on `abft.model`) over fault-free `feeds`."""
    if margin < 1:
        raise AbftError(f"margin: expected 1 or more, found {margin}")
    healthy = []
    for feed in feeds:
        residual = largest(run(feed)[abft.residual_index])
        if not math.isfinite(residual):
            raise AbftError("a fault-free run gave a non-finite residual: the model overflows")
        healthy.append(residual)
    if not healthy:
        raise AbftError("calibration needs at least one input")
    worst = max(healthy)
    # A model whose checks were exact on every input still needs a threshold over rounding.
    floor = float(np.finfo(np.float32).eps)
    return Calibration(margin * max(worst, floor), worst, margin, len(healthy))


def random_feeds(
    model: onnx.ModelProto, count: int, seed: int, batch: int = 1
) -> list[dict[str, np.ndarray]]:
    """`count` seeded inputs for the model's float inputs: standard normal values times a scale
    drawn log-uniformly from 0.1 to 10, so that a threshold is not tied to one input scale."""
    rng = np.random.default_rng(seed)
    inputs = graph_inputs(model)
    feeds = []
    for _ in range(count):
        scale = 10.0 ** rng.uniform(-1.0, 1.0)
        feed = {}
        for value in inputs:
            shape = _input_shape(value, batch)
            feed[value.name] = (rng.standard_normal(shape) * scale).astype(np.float32)
        feeds.append(feed)
    return feeds


def _input_shape(value: onnx.ValueInfoProto, batch: int) -> tuple[int, ...]:
    tensor_type = value.type.tensor_type
    if tensor_type.elem_type != TensorProto.FLOAT:
        raise AbftError(f"input {value.name}: only float32 inputs can be generated")
    shape = []
    for axis, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        elif axis == 0:
            shape.append(batch)
        else:
            raise AbftError(f"input {value.name} has a dynamic axis {axis} besides the batch")
    return tuple(shape)
