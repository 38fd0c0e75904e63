"""Runs inference jobs on onnxruntime: one cached session per model, redundancy on request.

Creating a session (loading weights, optimising the graph, on TensorRT building an engine) costs
far more than a run, so sessions live in an LRU cache keyed by the model's SHA-256.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from flight.jobs.providers import CPU, ORT_QUIET_SEVERITY, ProviderChoice
from flight.jobs.redundancy import Outputs, Redundancy, RunResult, run_redundant

logger = logging.getLogger(__name__)

#: Creates a session from a model file, its options and the provider list.
SessionFactory = Callable[[Path, ort.SessionOptions, list[str]], ort.InferenceSession]


def default_intra_op_threads() -> int:
    """One core fewer than the board has (at least one): the link loop and the job
    bookkeeping keep a core of their own, so neither the line nor the runs stall each other."""
    return max(1, (os.cpu_count() or 1) - 1)


class ExecutorError(Exception):
    """onnxruntime refused a model or a run; the message names the model and the cause."""


class SessionError(ExecutorError):
    """No session could be created from a model file (corrupt, unsupported, missing)."""


class InferenceError(ExecutorError):
    """A session rejected a run: inputs of the wrong name, type or shape, or a kernel failure."""


def create_session(
    model_path: Path, options: ort.SessionOptions, providers: list[str]
) -> ort.InferenceSession:
    """The real factory: an onnxruntime session on the model file."""
    return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)


class SessionCache:
    """onnxruntime sessions by model key, least recently used evicted beyond `capacity`."""

    def __init__(
        self,
        capacity: int,
        provider: ProviderChoice,
        intra_op_num_threads: int = 0,
        factory: SessionFactory = create_session,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"session cache capacity: expected at least 1, found {capacity}")
        if intra_op_num_threads < 0:
            raise ValueError(
                "intra_op_num_threads: expected 0 (onnxruntime's default) or more, "
                f"found {intra_op_num_threads}"
            )
        self.capacity = capacity
        self.provider = provider
        self.intra_op_num_threads = intra_op_num_threads
        # The CPU provider stays behind an accelerator for the operators it does not implement.
        self.providers = [CPU] if provider.provider == CPU else [provider.provider, CPU]
        self.creations = 0
        self._factory = factory
        self._sessions: OrderedDict[str, ort.InferenceSession] = OrderedDict()
        # Bumped by evict(): a session being created while its model is evicted is not cached.
        self._epochs: dict[str, int] = {}
        # The model service evicts from its own thread while the executor looks sessions up.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._sessions

    def keys(self) -> list[str]:
        """Cached model keys, least recently used first."""
        with self._lock:
            return list(self._sessions)

    def options(self) -> ort.SessionOptions:
        """The options every session is created with."""
        options = ort.SessionOptions()
        options.log_severity_level = ORT_QUIET_SEVERITY
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.intra_op_num_threads
        # Redundant runs are compared bit for bit: a kernel that picks a different algorithm
        # from run to run (cuDNN autotuning) would look like a radiation upset.
        options.use_deterministic_compute = True
        # Idle pool threads sleep instead of spinning: on a board that lives on a power and
        # thermal budget, a spinning core between jobs is waste, and it starves the link loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def get(self, key: str, model_path: Path) -> ort.InferenceSession:
        """The session for `key`, created from `model_path` on a miss.

        On a hit `model_path` is not read: the key names the model's content, not its file.
        """
        with self._lock:
            session = self._sessions.get(key)
            if session is not None:
                self._sessions.move_to_end(key)
                return session
            epoch = self._epochs.get(key, 0)
        # Created outside the lock: a TensorRT engine build takes seconds, and evict() must not
        # wait for it.
        session = self._create(key, model_path)
        with self._lock:
            if self._epochs.get(key, 0) != epoch:
                logger.info("model %s evicted while its session was created: not cached", key)
                return session
            # Another thread may have created the same session meanwhile: keep the first one.
            session = self._sessions.setdefault(key, session)
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.capacity:
                evicted, _ = self._sessions.popitem(last=False)
                logger.debug("session for model %s evicted (least recently used)", evicted)
            return session

    def _create(self, key: str, model_path: Path) -> ort.InferenceSession:
        try:
            session = self._factory(model_path, self.options(), list(self.providers))
        except Exception as error:
            # onnxruntime's errors derive from Exception alone (InvalidProtobuf, Fail, NoSuchFile).
            raise SessionError(
                f"model {key} at {model_path}: expected a loadable ONNX model, "
                f"onnxruntime said {type(error).__name__}: {error}"
            ) from error
        with self._lock:
            self.creations += 1
        kept = list(session.get_providers())
        if kept[:1] != self.providers[:1]:
            logger.warning("model %s: asked for %s, onnxruntime kept %s", key, self.providers, kept)
        return session

    def evict(self, key: str) -> bool:
        """Drop the session for `key` (model deleted or reloaded); True if one was cached.

        A job already running on that session finishes on it.
        """
        with self._lock:
            self._epochs[key] = self._epochs.get(key, 0) + 1
            return self._sessions.pop(key, None) is not None


class Executor:
    """Runs a job's inputs through its model's cached session, as many times as its mode asks."""

    def __init__(self, cache: SessionCache) -> None:
        self.cache = cache
        self.run_count = 0
        self.disagreement_count = 0

    def execute(
        self,
        key: str,
        model_path: Path,
        feeds: dict[str, np.ndarray],
        mode: Redundancy,
        *,
        on_run: Callable[[int], None] | None = None,
        run_options: ort.RunOptions | None = None,
    ) -> RunResult:
        """Run the model `key` on `feeds` under `mode`; `on_run(n)` after the n-th run;
        `run_options.terminate = True` from another thread aborts a run (InferenceError).

        Raises SessionError, InferenceError, or VotingError when redundant runs have no majority.
        """
        session = self.cache.get(key, model_path)
        names = [output.name for output in session.get_outputs()]
        runs = 0

        def run() -> Outputs:
            nonlocal runs
            runs += 1
            try:
                # feeds go to onnxruntime as they are: a copy here would be pure overhead.
                if run_options is None:
                    values = session.run(None, feeds)
                else:
                    values = session.run(None, feeds, run_options)
            except Exception as error:
                raise InferenceError(
                    f"model {key}: expected inputs {_signature(session)}, "
                    f"found {_feeds_signature(feeds)}; onnxruntime said "
                    f"{type(error).__name__}: {error}"
                ) from error
            if on_run is not None:
                on_run(runs)
            return dict(zip(names, values, strict=True))

        try:
            result = run_redundant(run, mode)
        finally:
            self.run_count += runs
        self.disagreement_count += result.disagreements
        return result


def _signature(session: ort.InferenceSession) -> str:
    return ", ".join(f"{i.name}: {i.type}{i.shape}" for i in session.get_inputs())


def _feeds_signature(feeds: dict[str, np.ndarray]) -> str:
    return ", ".join(
        f"{name}: {value.dtype}{list(value.shape)}"
        if isinstance(value, np.ndarray)
        else f"{name}: {type(value).__name__}"
        for name, value in feeds.items()
    )
