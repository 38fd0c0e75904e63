"""The check the bench models' parameters ([thermal_model], [power_model]) make of their numbers:
every one finite, some above zero, some not below it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from typing import Any


def check_numbers(
    parameters: Any,
    *,
    positive: Collection[str] = (),
    non_negative: Collection[str] = (),
    others: Collection[str] = (),
) -> None:
    """Every field of the dataclass `parameters` but `others` (checked by their owner) is a
    finite number, those in `positive` above 0 and those in `non_negative` 0 or more;
    ValueError naming the first that is not."""
    for field in dataclasses.fields(parameters):
        if field.name in others:
            continue
        value = getattr(parameters, field.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{field.name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{field.name} must be finite, got {value!r}")
        if field.name in positive and value <= 0:
            raise ValueError(f"{field.name} must be > 0, got {value!r}")
        if field.name in non_negative and value < 0:
            raise ValueError(f"{field.name} must be >= 0, got {value!r}")
