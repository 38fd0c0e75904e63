"""A model's signature as MODEL_REPORT gives it (`x float32[?,64] -> y float32[?,10]`), and the
ground's check of an input tensor against it, so that a tensor the payload would refuse is not
sent. The verdicts are the payload's (flight/jobs/model_check.py `check_input_header`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_TENSOR = re.compile(r"(?P<name>.+?) (?P<dtype>[a-z][a-z0-9]*)\[(?P<shape>[0-9?,]*)\]")
_INPUTS_END = " -> "
_NEXT = ", "


class InputDoesNotFit(Exception):
    """The tensor does not fit the model's inputs; one sentence."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input: its name, numpy dtype name and shape (None: a dynamic axis)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]


def parse_inputs(signature: str) -> list[TensorSpec] | None:
    """The inputs of a signature text; None when the text is not one (truncated, or a name
    that the format cannot carry), and the ground leaves the check to the payload."""
    inputs: list[TensorSpec] = []
    position = 0
    while True:
        match = _TENSOR.match(signature, position)
        if match is None:
            return None
        try:
            shape = tuple(None if d == "?" else int(d) for d in match["shape"].split(",") if d)
        except ValueError:
            return None
        if match["shape"] and len(shape) != match["shape"].count(",") + 1:
            return None
        inputs.append(TensorSpec(match["name"], match["dtype"], shape))
        position = match.end()
        if signature.startswith(_INPUTS_END, position):
            return inputs
        if not signature.startswith(_NEXT, position):
            return None
        position += len(_NEXT)


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype of a .npy file, from its header alone."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), dtype


def check_fits(inputs: list[TensorSpec], shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    """InputDoesNotFit when one array of `shape` and `dtype` cannot be the model's input."""
    if len(inputs) != 1:
        names = ", ".join(spec.name for spec in inputs)
        raise InputDoesNotFit(f"one array given, the model has {len(inputs)} inputs ({names})")
    spec = inputs[0]
    try:
        needed = np.dtype(spec.dtype)
    except TypeError:
        return  # a type the ground's numpy does not name: the payload checks it
    if dtype != needed:
        raise InputDoesNotFit(f"input {spec.name}: dtype is {dtype}, the model needs {spec.dtype}")
    if len(shape) != len(spec.shape):
        raise InputDoesNotFit(
            f"input {spec.name}: rank is {len(shape)} (shape {shape}), "
            f"the model needs {len(spec.shape)}"
        )
    for axis, (size, wanted) in enumerate(zip(shape, spec.shape, strict=True)):
        if wanted is None and size < 1:
            raise InputDoesNotFit(
                f"input {spec.name}: axis {axis} is {size}, the model needs at least 1"
            )
        if wanted is not None and size != wanted:
            raise InputDoesNotFit(
                f"input {spec.name}: axis {axis} is {size}, the model needs {wanted}"
            )
