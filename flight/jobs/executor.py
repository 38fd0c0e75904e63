"""Runs inference jobs on onnxruntime: one cached session per model, redundancy on request.

Creating a session (loading weights, optimising the graph, on TensorRT building an engine) costs
far more than a run, so sessions live in an LRU cache keyed by the model's SHA-256. On the CPU
a session computes from weight arrays the payload owns (flight/protection/weights.py), which
the scrubber checks and repairs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from flight.jobs.providers import CPU, ORT_QUIET_SEVERITY, ProviderChoice
from flight.jobs.redundancy import Outputs, Redundancy, RunResult, run_checked, run_redundant
from flight.protection.abft import RESIDUAL_OUTPUT, check
from flight.protection.faults import FaultModel, inject
from flight.protection.weights import (
    WeightSet,
    initializer_arrays,
    optimised_form,
    owned_session_options,
)
from flight.thermal.duty import ComputeGate

logger = logging.getLogger(__name__)

#: Creates a session from a serialised model, its options and the provider list.
SessionFactory = Callable[[bytes, ort.SessionOptions, list[str]], ort.InferenceSession]
#: Where a model's bytes come from: a file, or a reader that checks them (the registry's copies).
ModelSource = Path | Callable[[], bytes]


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
    model: bytes, options: ort.SessionOptions, providers: list[str]
) -> ort.InferenceSession:
    """The real factory: an onnxruntime session on the serialised model."""
    return ort.InferenceSession(model, sess_options=options, providers=providers)


def reference_session(model: bytes, intra_op_num_threads: int = 0) -> ort.InferenceSession:
    """A CPU session that computes bit for bit what the payload's CPU sessions compute: to check
    a result elsewhere (the ground, the tests).

    The payload turns prepacking off (its weights must stay where it checks them), and prepacked
    GEMM kernels round differently, so a default session can differ in the last bits.
    """
    options = ort.SessionOptions()
    options.log_severity_level = ORT_QUIET_SEVERITY
    options.intra_op_num_threads = intra_op_num_threads
    options.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(model, sess_options=options, providers=[CPU])


def read_source(source: ModelSource) -> bytes:
    return source.read_bytes() if isinstance(source, Path) else source()


@dataclass(eq=False)
class LoadedModel:
    """A model's session and, on the CPU, the weight arrays it computes from."""

    key: str
    session: ort.InferenceSession
    weights: WeightSet | None
    # onnxruntime uses these in place: they must live as long as the session.
    _values: list[ort.OrtValue] = field(default_factory=list, repr=False)
    #: Monotonic time of the last known-answer check passed (-inf: none yet).
    answer_checked: float = -math.inf


class SessionCache:
    """onnxruntime sessions by model key, least recently used evicted beyond `capacity`."""

    def __init__(
        self,
        capacity: int,
        provider: ProviderChoice,
        intra_op_num_threads: int = 0,
        factory: SessionFactory = create_session,
        own_weights: bool | None = None,
    ) -> None:
        """`own_weights`: sessions compute from payload-owned arrays (default: on the CPU only;
        an accelerator copies weights into its own memory, where the known answer checks them)."""
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
        self.own_weights = provider.provider == CPU if own_weights is None else own_weights
        self.creations = 0
        self._factory = factory
        self._sessions: OrderedDict[str, LoadedModel] = OrderedDict()
        # Bumped by evict(): a session being created while its model is evicted is not cached.
        self._epochs: dict[str, int] = {}
        # The model service evicts from its own thread while the executor looks sessions up.
        self._lock = threading.Lock()
        #: Around each session creation, which holds the GIL for as long as onnxruntime takes
        #: (a worker stops beating meanwhile, and warns its supervisor by this).
        self.around_build: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext

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

    def loaded(self) -> list[LoadedModel]:
        """The cached models, least recently used first (for the scrubber)."""
        with self._lock:
            return list(self._sessions.values())

    def peek(self, key: str) -> LoadedModel | None:
        """The cached model for `key` without loading or touching its recency."""
        with self._lock:
            return self._sessions.get(key)

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

    def get(self, key: str, source: ModelSource) -> LoadedModel:
        """The loaded model for `key`, created from `source` on a miss.

        On a hit `source` is not read: the key names the model's content, not its file.
        """
        with self._lock:
            loaded = self._sessions.get(key)
            if loaded is not None:
                self._sessions.move_to_end(key)
                return loaded
            epoch = self._epochs.get(key, 0)
        # Created outside the lock: a TensorRT engine build takes seconds, and evict() must not
        # wait for it.
        with self.around_build():
            loaded = self._create(key, source)
        with self._lock:
            if self._epochs.get(key, 0) != epoch:
                logger.info("model %s evicted while its session was created: not cached", key)
                return loaded
            # Another thread may have created the same session meanwhile: keep the first one.
            loaded = self._sessions.setdefault(key, loaded)
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.capacity:
                evicted, _ = self._sessions.popitem(last=False)
                logger.debug("session for model %s evicted (least recently used)", evicted)
            return loaded

    def _create(self, key: str, source: ModelSource) -> LoadedModel:
        where = f" at {source}" if isinstance(source, Path) else ""
        try:
            data = read_source(source)
        except OSError as error:
            raise SessionError(f"model {key}{where}: not readable: {error}") from error
        try:
            loaded = self._load(key, data, source)
        except Exception as error:
            # onnxruntime's errors derive from Exception alone (InvalidProtobuf, Fail, NoSuchFile).
            raise SessionError(
                f"model {key}{where}: expected a loadable ONNX model, "
                f"onnxruntime said {type(error).__name__}: {error}"
            ) from error
        with self._lock:
            self.creations += 1
        kept = list(loaded.session.get_providers())
        if kept[:1] != self.providers[:1]:
            logger.warning("model %s: asked for %s, onnxruntime kept %s", key, self.providers, kept)
        return loaded

    def _load(self, key: str, data: bytes, source: ModelSource) -> LoadedModel:
        providers = list(self.providers)
        if not self.own_weights:
            return LoadedModel(key, self._factory(data, self.options(), providers), None)
        optimised = optimised_form(data, self.options(), providers)
        arrays = initializer_arrays(optimised)
        if any(not array.dtype.isnative or array.dtype.hasobject for array in arrays.values()):
            # String initializers cannot be handed over as OrtValues: this model keeps
            # onnxruntime's copies, and its known answer is its only check.
            return LoadedModel(key, self._factory(data, self.options(), providers), None)
        options = owned_session_options(self.options())
        values = []
        for name, array in arrays.items():
            value = ort.OrtValue.ortvalue_from_numpy(array)
            options.add_initializer(name, value)
            values.append(value)
        session = self._factory(optimised, options, providers)

        def golden() -> dict[str, np.ndarray]:
            return initializer_arrays(
                optimised_form(read_source(source), self.options(), providers)
            )

        return LoadedModel(key, session, WeightSet(key, arrays, golden), values)

    def evict(self, key: str) -> bool:
        """Drop the session for `key` (model deleted or reloaded); True if one was cached.

        A job already running on that session finishes on it.
        """
        with self._lock:
            self._epochs[key] = self._epochs.get(key, 0) + 1
            return self._sessions.pop(key, None) is not None


class Executor:
    """Runs a job's inputs through its model's cached session, as many times as its mode asks."""

    def __init__(self, cache: SessionCache, gate: ComputeGate | None = None) -> None:
        """`gate`: asked before every run (the thermal governor's duty cycle and holds)."""
        self.cache = cache
        self.gate = gate or ComputeGate()
        self.run_count = 0
        self.disagreement_count = 0
        # A test command's fault for one run of the next redundant job: (model, seed).
        self._armed: tuple[FaultModel, int] | None = None

    @property
    def bit_exact(self) -> bool:
        """Runs of one session on one input give the same bytes (the CPU provider)."""
        return self.cache.provider.provider == CPU

    def tolerance(self, model_tolerance: float) -> float:
        """The tolerance redundant runs are compared with: none on a bit-exact provider."""
        return 0.0 if self.bit_exact else model_tolerance

    def arm_output_fault(self, model: FaultModel, seed: int) -> None:
        """Corrupt one run's output of the next DMR or TMR job (a test command)."""
        self._armed = (model, seed)

    def execute(
        self,
        key: str,
        source: ModelSource,
        feeds: dict[str, np.ndarray],
        mode: Redundancy,
        *,
        tolerance: float = 0.0,
        abft_threshold: float = 0.0,
        before_rerun: Callable[[], None] | None = None,
        on_run: Callable[[int], None] | None = None,
        run_options: ort.RunOptions | None = None,
    ) -> RunResult:
        """Run the model `key` on `feeds` under `mode`; `on_run(n)` after the n-th run;
        `run_options.terminate = True` from another thread aborts a run (InferenceError).
        `tolerance`: the model's, used only where runs are not bit-exact. ABFT: `key` and
        `source` are the model with checksums, whose residual must stay under `abft_threshold`;
        `before_rerun` is called when it does not, before the run is repeated.

        Raises SessionError, InferenceError, or VotingError when redundant runs have no majority.
        """
        session = self.cache.get(key, source).session
        names = [output.name for output in session.get_outputs()]
        if mode == Redundancy.ABFT and RESIDUAL_OUTPUT not in names:
            raise ExecutorError(f"model {key}: ABFT runs the model with checksums, not this one")
        runs = 0
        armed = None
        if mode in (Redundancy.DMR, Redundancy.TMR):
            armed, self._armed = self._armed, None
        upset_run = int(np.random.default_rng(armed[1]).integers(2)) + 1 if armed else 0
        gate = self.gate

        def cancelled() -> bool:
            # A run held by the gate and then cancelled goes to onnxruntime, which refuses it at
            # once: the caller sees the same error as for a run stopped midway.
            return run_options is not None and run_options.terminate

        def run() -> Outputs:
            nonlocal runs
            runs += 1
            gate.admit(cancelled)
            try:
                # feeds go to onnxruntime as they are: a copy here would be pure overhead.
                with gate.running():
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
            if runs == upset_run and armed is not None and values:
                upset = np.array(values[0], order="C")
                inject(upset, armed[0], np.random.default_rng(armed[1]))
                values[0] = upset
                logger.warning("model %s: run %d output corrupted by a test command", key, runs)
            if on_run is not None:
                on_run(runs)
            return dict(zip(names, values, strict=True))

        try:
            if mode == Redundancy.ABFT:
                result = run_checked(
                    run, lambda o: check(o[RESIDUAL_OUTPUT], abft_threshold), before_rerun
                )
                outputs = {k: v for k, v in result.outputs.items() if k != RESIDUAL_OUTPUT}
                result = dataclasses.replace(result, outputs=outputs)
            else:
                result = run_redundant(run, mode, self.tolerance(tolerance))
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
