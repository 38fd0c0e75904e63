"""Provider selection: the fallback walk with fake backends, the quiet probe on real onnxruntime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from flight.jobs.providers import (
    ALLOW_ENV,
    CPU,
    CUDA,
    NO_DEVICE,
    NOT_ALLOWED,
    NOT_IN_BUILD,
    PREFERENCE,
    TENSORRT,
    OnnxruntimeBackend,
    ProviderChoice,
    allowed_from_environment,
    probe_model,
    select_provider,
)

REPO = Path(__file__).resolve().parents[4]


class FakeBackend:
    """A build listing `built` providers, of which only `usable` survive session creation."""

    def __init__(self, built: list[str], usable: set[str], broken: set[str] | None = None) -> None:
        self.built = built
        self.usable = usable | {CPU}
        self.broken = broken or set()
        self.probed: list[list[str]] = []

    def available(self) -> list[str]:
        return list(self.built)

    def session_providers(self, model: bytes, providers: list[str]) -> list[str]:
        assert model == probe_model()
        self.probed.append(list(providers))
        if set(providers) & self.broken:
            raise RuntimeError("EP failed to initialise")
        # As onnxruntime does: unusable providers are dropped, CPU is always appended.
        return [p for p in providers if p in self.usable and p != CPU] + [CPU]


@pytest.fixture(autouse=True)
def _no_operator_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)


def test_tensorrt_is_chosen_when_it_works() -> None:
    backend = FakeBackend(list(PREFERENCE), usable={TENSORRT, CUDA})
    assert select_provider(backend) == ProviderChoice(TENSORRT, ())
    assert backend.probed == [[TENSORRT]]


def test_cuda_is_chosen_when_tensorrt_is_not_in_the_build() -> None:
    backend = FakeBackend([CUDA, CPU], usable={CUDA})
    assert select_provider(backend) == ProviderChoice(CUDA, ((TENSORRT, NOT_IN_BUILD),))
    assert backend.probed == [[CUDA]]


def test_cuda_is_chosen_when_tensorrt_falls_back_to_cpu() -> None:
    backend = FakeBackend(list(PREFERENCE), usable={CUDA})
    assert select_provider(backend) == ProviderChoice(CUDA, ((TENSORRT, NO_DEVICE),))


def test_cpu_when_every_accelerator_fails() -> None:
    backend = FakeBackend(list(PREFERENCE), usable=set(), broken={TENSORRT})
    choice = select_provider(backend)
    assert choice.provider == CPU
    assert [name for name, _ in choice.tried] == [TENSORRT, CUDA]
    trt_reason, cuda_reason = (reason for _, reason in choice.tried)
    assert trt_reason.startswith(NO_DEVICE) and "EP failed to initialise" in trt_reason
    assert cuda_reason == NO_DEVICE


def test_cpu_only_build_probes_nothing() -> None:
    backend = FakeBackend([CPU], usable=set())
    choice = select_provider(backend)
    assert choice == ProviderChoice(CPU, ((TENSORRT, NOT_IN_BUILD), (CUDA, NOT_IN_BUILD)))
    assert backend.probed == []


def test_allow_list_is_honoured() -> None:
    backend = FakeBackend(list(PREFERENCE), usable={TENSORRT, CUDA})
    assert select_provider(backend, allow=[CUDA, CPU]) == ProviderChoice(
        CUDA, ((TENSORRT, NOT_ALLOWED),)
    )
    assert backend.probed == [[CUDA]]


def test_operator_forces_cpu_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, " CPUExecutionProvider ")
    backend = FakeBackend(list(PREFERENCE), usable={TENSORRT, CUDA})
    choice = select_provider(backend)
    assert choice == ProviderChoice(CPU, ((TENSORRT, NOT_ALLOWED), (CUDA, NOT_ALLOWED)))
    assert backend.probed == []


def test_cpu_is_the_floor_even_when_the_allow_list_omits_it() -> None:
    backend = FakeBackend(list(PREFERENCE), usable=set())
    choice = select_provider(backend, allow=["CUDAExecutionprovider"])  # an operator's typo
    assert choice.provider == CPU


def test_preference_order_is_the_callers() -> None:
    backend = FakeBackend(list(PREFERENCE), usable={TENSORRT, CUDA})
    assert select_provider(backend, preference=(CUDA, TENSORRT, CPU)).provider == CUDA
    assert select_provider(backend, preference=(CPU, CUDA)).provider == CPU


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        (" , ", None),
        ("CPUExecutionProvider", frozenset({CPU})),
        ("CUDAExecutionProvider, CPUExecutionProvider,", frozenset({CUDA, CPU})),
    ],
)
def test_allow_list_parsing(value: str | None, expected: frozenset[str] | None) -> None:
    environ = {} if value is None else {ALLOW_ENV: value}
    assert allowed_from_environment(environ) == expected


def test_probe_model_runs_on_the_cpu() -> None:
    session = ort.InferenceSession(probe_model(), providers=[CPU])
    x = np.array([1.5], dtype=np.float32)
    (y,) = session.run(None, {"x": x})
    assert y.tobytes() == x.tobytes()


def test_real_onnxruntime_falls_back_to_cpu_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    choice = select_provider(OnnxruntimeBackend())
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    _assert_cpu_without_gpu(choice.provider, [list(t) for t in choice.tried])
    # fd 2 is restored after the probe.
    os.write(2, b"still here\n")
    assert capfd.readouterr().err == "still here\n"


def test_real_onnxruntime_probe_is_quiet_in_a_fresh_process() -> None:
    # A fresh process: onnxruntime logs a provider's load failure only the first time.
    script = (
        "import json\n"
        "from flight.jobs.providers import OnnxruntimeBackend, select_provider\n"
        "choice = select_provider(OnnxruntimeBackend())\n"
        "print(json.dumps([choice.provider, choice.tried]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ALLOW_ENV}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stderr == ""
    provider, tried = json.loads(done.stdout)  # nothing else on stdout either
    _assert_cpu_without_gpu(provider, tried)


def _assert_cpu_without_gpu(provider: str, tried: list[list[str]]) -> None:
    if _has_gpu():
        pytest.skip("this machine has a GPU: the CPU fallback cannot be observed")
    assert provider == CPU
    built = ort.get_available_providers()
    expected = [name for name in (TENSORRT, CUDA) if name in built]
    assert [name for name, _ in tried if name in expected] == expected
    for name, reason in tried:
        assert reason == (NO_DEVICE if name in built else NOT_IN_BUILD) or reason.startswith(
            NO_DEVICE
        )


def _has_gpu() -> bool:
    return Path("/dev/nvidia0").exists() or Path("/dev/nvhost-ctrl-gpu").exists()
