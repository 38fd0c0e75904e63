"""The simulated day's workload: jobs refer only to what it uploads, and a result matches only
what onnxruntime computes on the ground, bit for bit."""

from __future__ import annotations

import io

import numpy as np
import pytest

from hil.day_workload import JobSpec, Workload, WorkloadError, default_workload, npy
from tools import model_gen


def small() -> Workload:
    model = model_gen.small_cnn(seed=1)
    image = npy(model_gen.random_input(model, 1, seed=5))
    return Workload(
        {"cnn": model_gen.model_bytes(model)}, {"x.npy": image}, [JobSpec("cnn", "x.npy")]
    )


def test_a_job_on_a_model_or_input_the_workload_lacks_is_refused() -> None:
    w = small()
    with pytest.raises(WorkloadError, match="model 'other'"):
        Workload(w.models, w.inputs, [JobSpec("other", "x.npy")])
    with pytest.raises(WorkloadError, match=r"input 'y\.npy'"):
        Workload(w.models, w.inputs, [JobSpec("cnn", "y.npy")])


def test_a_result_matches_only_the_grounds_computation_bit_for_bit() -> None:
    w = small()
    expected = w.expected("cnn", "x.npy")
    assert expected.shape == (1, 10) and expected.dtype == np.float32
    assert w.matches("cnn", "x.npy", npy(expected))
    nudged = expected.copy()
    nudged.view(np.uint32)[0, 0] ^= 1  # the last bit of one value
    assert not w.matches("cnn", "x.npy", npy(nudged))
    assert not w.matches("cnn", "x.npy", npy(expected.astype(np.float64)))


def test_the_default_day_is_100_jobs_that_submit_as_the_dictionary_asks() -> None:
    w = default_workload()
    assert len(w.jobs) == 100 and len(w.models) == 3 and len(w.inputs) == 24
    kinds = [j.model for j in w.jobs]
    assert kinds.count("conv-stack") == 20 and kinds[:5] != sorted(kinds[:5])  # interleaved
    assert w.upload_octets < 500_000
    assert JobSpec("cnn-a", "image-00.npy", redundancy="TMR").arguments() == [
        "model=cnn-a", "version=0", "input=image-00.npy", "priority=100", "redundancy=TMR",
        "deadline=0",
    ]  # fmt: skip
    scale = np.load(io.BytesIO(w.inputs["scale-0.npy"]), allow_pickle=False)
    assert scale.shape == (1, 1)
