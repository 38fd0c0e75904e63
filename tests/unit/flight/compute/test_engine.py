"""The compute engine a worker process serves, called directly: jobs prepared, run, accepted;
what it tells by itself; its status."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

from flight.compute.engine import ComputeEngine, EngineSettings, Notice, RunDone
from flight.compute.job_compute import Computed, ComputeFailed, JobInput, JobNotPrepared
from flight.compute.model_view import AnswerRecorded
from flight.jobs.executor import reference_session
from flight.jobs.redundancy import Redundancy
from flight.jobs.registry import ModelEntry, ModelRegistry
from flight.protection.upsets import Outcome, Upset, UpsetLocation, UpsetLog
from tests.unit.flight.protection.test_model_guard import ON_CPU, upset_weight
from tests.unit.flight.protection.test_weights import MAX_MODEL_BYTES, gemm_model


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def job(job_id: int, entry: ModelEntry, mode: Redundancy, octets: bytes) -> JobInput:
    return JobInput(job_id, entry, mode, octets, hashlib.sha256(octets).digest(), "in.npy")


def setup(tmp_path: Path) -> tuple[ComputeEngine, ModelEntry, list[Notice]]:
    models = ModelRegistry(tmp_path / "m", max_model_bytes=MAX_MODEL_BYTES, upsets=UpsetLog())
    entry = models.register("m", 1, gemm_model())
    told: list[Notice] = []
    engine = ComputeEngine(EngineSettings(ON_CPU, 2, 1), told.append)
    entry = engine.record_answer(entry)
    return engine, entry, told


def test_a_tmr_job_computes_what_the_reference_session_computes(tmp_path: Path) -> None:
    engine, entry, told = setup(tmp_path)
    features = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    assert engine.prepare(job(7, entry, Redundancy.TMR, npy(features))) is None
    computed = engine.run(7)
    assert isinstance(computed, Computed) and computed.runs == 3
    accepted = engine.accept(7, computed)
    assert isinstance(accepted, Computed)
    expected = reference_session(entry.path.read_bytes()).run(None, {"features": features})
    assert np.array_equal(next(iter(accepted.outputs.values())), expected[0])
    # The last run is told by the outcome itself.
    assert [n for n in told if isinstance(n, RunDone)] == [
        RunDone(7, 1),
        RunDone(7, 2),
    ]
    assert any(isinstance(n, AnswerRecorded) for n in told)
    status = engine.status()
    assert status.runs == 3 and status.sessions == 1 and status.protected_octets > 0
    engine.discard(7)
    with pytest.raises(JobNotPrepared):  # forgotten
        engine.run(7)


def test_a_bad_input_fails_at_preparation_with_its_code(tmp_path: Path) -> None:
    engine, entry, _ = setup(tmp_path)
    octets = npy(np.zeros((2, 5), np.float32))
    failed = engine.prepare(job(1, entry, Redundancy.NONE, octets))
    assert isinstance(failed, ComputeFailed) and failed.failure == "INPUT_WRONG_SHAPE"
    tampered = JobInput(2, entry, Redundancy.NONE, octets, bytes(32), "in.npy")
    failed = engine.prepare(tampered)
    assert isinstance(failed, ComputeFailed) and failed.failure == "INPUT_CORRUPT"


def test_an_upset_found_in_the_weights_is_told_and_the_job_rerun(tmp_path: Path) -> None:
    engine, entry, told = setup(tmp_path)
    features = np.ones((1, 8), np.float32)
    engine.prepare(job(3, entry, Redundancy.DMR, npy(features)))
    computed = engine.run(3)
    assert isinstance(computed, Computed)
    loaded = engine.sessions.peek(entry.key)
    assert loaded is not None
    upset_weight(loaded)  # struck after the runs: the check before acceptance repairs it
    accepted = engine.accept(3, computed)
    assert isinstance(accepted, Computed) and accepted.runs == 4
    upsets = [n for n in told if isinstance(n, Upset)]
    assert [(u.location, u.outcome) for u in upsets] == [(UpsetLocation.WEIGHTS, Outcome.CORRECTED)]


def test_a_cancelled_job_stops_before_it_runs(tmp_path: Path) -> None:
    engine, entry, _ = setup(tmp_path)
    engine.prepare(job(4, entry, Redundancy.TMR, npy(np.ones((1, 8), np.float32))))
    engine.cancel(4)
    failed = engine.run(4)
    assert isinstance(failed, ComputeFailed) and failed.failure == "INFERENCE_FAILED"
