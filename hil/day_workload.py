"""The jobs of a simulated day on the bench: the models and inputs the ground uploads, the jobs
it submits, and what each result must be (onnxruntime run on the ground, bit for bit).

The default day is 100 jobs of small CNNs from tools/model_gen with fixed seeds: 80 image
classifications by two small CNN classifiers (seeds 1 and 2) on 20 images, and 20 runs of a
convolution stack that computes for about 0.1 s a run on this bench's CPU (seed 3), so that the
day's compute is felt by the battery and the thermal model (at 200x real time a run of 0.1 s is
20 s of orbit at the compute's power), where the classifiers' fraction of a millisecond is not.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from flight.jobs.executor import reference_session
from tools import model_gen

PRIORITY = 100
URGENT = 200


class WorkloadError(ValueError):
    """A workload that refers to a model or an input it does not have."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job: a registered model on an uploaded input, as JOB_SUBMIT takes it."""

    model: str
    input: str
    priority: int = PRIORITY
    redundancy: str = "NONE"
    deadline_s: int = 0

    def arguments(self) -> list[str]:
        """JOB_SUBMIT's arguments as the station's API takes them."""
        return [
            f"model={self.model}",
            "version=0",
            f"input={self.input}",
            f"priority={self.priority}",
            f"redundancy={self.redundancy}",
            f"deadline={self.deadline_s}",
        ]


@dataclass
class Workload:
    """Models (name: ONNX octets), inputs (onboard file name: .npy octets) and jobs."""

    models: dict[str, bytes]
    inputs: dict[str, bytes]
    jobs: list[JobSpec]
    _expected: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for job in self.jobs:
            if job.model not in self.models:
                raise WorkloadError(f"a job runs model {job.model!r}, which the workload lacks")
            if job.input not in self.inputs:
                raise WorkloadError(f"a job reads input {job.input!r}, which the workload lacks")

    @property
    def upload_octets(self) -> int:
        return sum(map(len, self.models.values())) + sum(map(len, self.inputs.values()))

    def expected(self, model: str, input_name: str) -> np.ndarray:
        """The result of `model` on `input_name`, computed on the ground as the payload's CPU
        sessions compute it."""
        key = (model, input_name)
        if key not in self._expected:
            if model not in self.models or input_name not in self.inputs:
                raise WorkloadError(f"no model {model!r} or input {input_name!r} in the workload")
            session = reference_session(self.models[model], intra_op_num_threads=1)
            x = np.load(io.BytesIO(self.inputs[input_name]), allow_pickle=False)
            feed = {session.get_inputs()[0].name: x}
            self._expected[key] = np.asarray(session.run(None, feed)[0])
        return self._expected[key]

    def matches(self, model: str, input_name: str, result: bytes) -> bool:
        """Whether a result file holds, bit for bit, what the ground computes."""
        found = np.load(io.BytesIO(result), allow_pickle=False)
        expected = self.expected(model, input_name)
        return bool(
            found.dtype == expected.dtype
            and found.shape == expected.shape
            and found.tobytes() == expected.tobytes()
        )


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def default_workload(
    images: int = 20, classifications: int = 80, heavy: int = 20, heavy_layers: int = 16
) -> Workload:
    """The default day (see the module's docstring): `classifications` jobs on `images`
    images by two small CNNs, one in four TMR and one in eight urgent; `heavy` TMR runs of the
    convolution stack (`heavy_layers` layers of 192 x 192 x 32)."""
    classifiers = {
        "cnn-a": model_gen.small_cnn(seed=1),
        "cnn-b": model_gen.small_cnn(seed=2),
    }
    stack = model_gen.slow_model(seed=3, layers=heavy_layers, size=192)
    models = {name: model_gen.model_bytes(m) for name, m in classifiers.items()}
    models["conv-stack"] = model_gen.model_bytes(stack)
    inputs = {
        f"image-{i:02d}.npy": npy(model_gen.random_input(classifiers["cnn-a"], 1, seed=100 + i))
        for i in range(images)
    }
    scales = [0.5, 1.0, 1.5, 2.0]
    for i, scale in enumerate(scales):
        inputs[f"scale-{i}.npy"] = npy(np.array([[scale]], dtype=np.float32))
    jobs = [
        JobSpec(
            model="cnn-a" if n % 2 == 0 else "cnn-b",
            input=f"image-{n % images:02d}.npy",
            priority=URGENT if n % 8 == 7 else PRIORITY,
            redundancy="TMR" if n % 4 == 3 else "NONE",
        )
        for n in range(classifications)
    ]
    jobs += [
        JobSpec(model="conv-stack", input=f"scale-{n % len(scales)}.npy", redundancy="TMR")
        for n in range(heavy)
    ]
    # Interleaved as an operator's requests would come, not sorted by kind.
    order = sorted(range(len(jobs)), key=lambda n: (n * 37) % len(jobs))
    return Workload(models, inputs, [jobs[n] for n in order])
