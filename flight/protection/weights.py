"""Weights the payload owns: the buffers onnxruntime computes from, with a golden CRC-32 each.

onnxruntime normally copies a model's initializers into its own memory and transforms them
(Conv+BatchNorm folding, the NCHWc layout, prepacked GEMM panels), so checking the model file
would not check the bytes inference reads. On the CPU the payload therefore lets onnxruntime
optimise the model once, takes the optimised initializers into arrays of its own, and creates
the session on the optimised graph with optimisation and prepacking off and every initializer
handed over with `add_initializer` (used in place, not copied). A bit flipped in one of these
arrays changes the next inference, so scrubbing them checks what inference uses. The
optimisation is deterministic for a model, an onnxruntime build and a board, which lets a
corrupted tensor be repaired by deriving it again from the stored model.
"""

from __future__ import annotations

import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

# CRC-32 is computed in slices this long: the scrubber paces itself between slices, and a
# slice is short enough that the GIL-free CRC does not delay a repair for long.
SLICE_OCTETS = 1 << 20


class WeightError(Exception):
    """The weights of a model cannot be derived or repaired."""


def optimised_form(model: bytes, options: ort.SessionOptions, providers: list[str]) -> bytes:
    """The model as onnxruntime optimises it with `options` for this board, serialised."""
    with tempfile.TemporaryDirectory(prefix="payload-opt-") as directory:
        target = Path(directory) / "optimised.onnx"
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(model, sess_options=options, providers=providers)
        return target.read_bytes()


def initializer_arrays(model: bytes) -> dict[str, np.ndarray]:
    """Every initializer of a serialised model as an array of its own (C-contiguous, writable)."""
    parsed = onnx.load_model_from_string(model)
    return {t.name: np.array(numpy_helper.to_array(t), order="C") for t in parsed.graph.initializer}


def crc_of(array: np.ndarray) -> int:
    """CRC-32 of an array's bytes, computed in slices (zlib releases the GIL on each)."""
    view = array.reshape(-1).view(np.uint8).data
    crc = 0
    for start in range(0, len(view), SLICE_OCTETS):
        crc = zlib.crc32(view[start : start + SLICE_OCTETS], crc)
    return crc


def crcs_of(arrays: dict[str, np.ndarray]) -> dict[str, int]:
    """CRC-32 of every array, by name: taken when arrays are loaded, compared after use."""
    return {name: crc_of(array) for name, array in arrays.items()}


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What a check found: tensors repaired from the golden source, and those that stayed bad."""

    repaired: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.repaired and not self.failed


#: Gives the golden arrays again (derived from the stored model) for a repair.
GoldenSource = Callable[[], dict[str, np.ndarray]]


class WeightSet:
    """A loaded model's owned weight arrays, their golden CRC-32s, and their repair."""

    def __init__(self, name: str, arrays: dict[str, np.ndarray], golden: GoldenSource) -> None:
        """`arrays` are taken over (not copied); their CRCs now are the golden values."""
        self.name = name
        self.arrays = arrays
        self.crcs = crcs_of(arrays)
        self._golden = golden
        # Bumped by each repair: a job that saw the same generation before and after its runs
        # computed on weights no repair touched.
        self.generation = 0
        self._lock = threading.Lock()

    @property
    def octets(self) -> int:
        return sum(array.nbytes for array in self.arrays.values())

    def slices(self) -> Iterator[tuple[str, memoryview, bool]]:
        """(tensor, slice, last slice of the tensor) for every slice of every tensor, in order."""
        for key, array in self.arrays.items():
            view = array.reshape(-1).view(np.uint8).data
            starts = range(0, max(len(view), 1), SLICE_OCTETS)
            for start in starts:
                yield key, view[start : start + SLICE_OCTETS], start == starts[-1]

    def corrupt(self) -> list[str]:
        """Tensors whose bytes no longer match their golden CRC."""
        return [key for key, array in self.arrays.items() if crc_of(array) != self.crcs[key]]

    def check_and_repair(self, suspects: list[str] | None = None) -> RepairReport:
        """Check `suspects` (every tensor when None); repair what fails from the golden source."""
        with self._lock:
            keys = list(self.arrays) if suspects is None else suspects
            bad = [key for key in keys if crc_of(self.arrays[key]) != self.crcs[key]]
            if not bad:
                return RepairReport()
            try:
                golden = self._golden()
            except Exception as exc:
                raise WeightError(f"{self.name}: golden weights not derivable: {exc}") from exc
            repaired, failed = [], []
            for key in bad:
                source = golden.get(key)
                if (
                    source is None
                    or source.shape != self.arrays[key].shape
                    or source.dtype != self.arrays[key].dtype
                    or crc_of(source) != self.crcs[key]
                ):
                    failed.append(key)
                    continue
                # In place: the session holds this very buffer.
                np.copyto(self.arrays[key], source)
                if crc_of(self.arrays[key]) == self.crcs[key]:
                    repaired.append(key)
                else:
                    failed.append(key)
            self.generation += 1
            return RepairReport(tuple(repaired), tuple(failed))


def owned_session_options(options: ort.SessionOptions) -> ort.SessionOptions:
    """`options` for a session on an already optimised graph whose weights the payload owns."""
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # Prepacking copies GEMM weights into onnxruntime's own panels: the owned arrays would no
    # longer be what inference reads.
    options.add_session_config_entry("session.disable_prepacking", "1")
    return options
