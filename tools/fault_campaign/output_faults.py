"""A session wrapper that corrupts one output of one run: a replica upset."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from flight.jobs.executor import create_session
from flight.protection.faults import FaultModel, inject
from flight.protection.injection import choose_by_size


class OutputFaults:
    """Corrupts one output of the armed run of the sessions it creates (a replica upset)."""

    def __init__(self) -> None:
        self._armed: tuple[int, FaultModel, np.random.Generator] | None = None
        self._runs = 0

    def arm(self, run: int, model: FaultModel, rng: np.random.Generator) -> None:
        """Corrupt an output of the `run`-th session run from now (1-based)."""
        self._armed, self._runs = (run, model, rng), 0

    def disarm(self) -> bool:
        """Forget an armed fault; True when it had not struck."""
        armed, self._armed = self._armed, None
        return armed is not None

    def factory(
        self, model: bytes, options: ort.SessionOptions, providers: list[str]
    ) -> ort.InferenceSession:
        """A SessionCache factory: a real session, wrapped."""
        return _FaultySession(create_session(model, options, providers), self)

    def after_run(self, names: list[str], values: list[Any]) -> list[Any]:
        """A session run's outputs, one of them corrupted when this is the armed run."""
        if self._armed is None:
            return values
        self._runs += 1
        run, model, rng = self._armed
        if self._runs != run:
            return values
        self._armed = None
        arrays = {
            name: value
            for name, value in zip(names, values, strict=True)
            if isinstance(value, np.ndarray) and value.nbytes >= 4
        }
        name = choose_by_size(arrays, rng)
        index = names.index(name)
        upset = np.array(values[index], order="C")
        inject(upset, model, rng)
        values[index] = upset
        return values


class _FaultySession:
    """An onnxruntime session whose outputs pass through OutputFaults."""

    def __init__(self, session: ort.InferenceSession, faults: OutputFaults) -> None:
        self._session = session
        self._faults = faults

    def run(
        self,
        output_names: list[str] | None,
        feeds: dict[str, np.ndarray],
        run_options: ort.RunOptions | None = None,
    ) -> list[Any]:
        if run_options is None:
            values = self._session.run(output_names, feeds)
        else:
            values = self._session.run(output_names, feeds, run_options)
        names = output_names or [output.name for output in self._session.get_outputs()]
        return self._faults.after_run(list(names), list(values))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
