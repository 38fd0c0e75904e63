"""ABFT cost and detection: run time of the checked model against the original, and the share of
injected compute and weight faults it detects.

Target (issue): overhead <= 15 % on the demo CNN and on a real PyTorch export, against ~3x for
TMR, which detects every fault of a single run that changes an output. Every model runs as the
payload runs it (SessionCache: optimised once with ORT_ENABLE_ALL, the optimised graph loaded
with optimisation and prepacking off, one intra-op thread as on the two-core board), and also in
a plain ORT_ENABLE_ALL session, timed alternately in best-of-N loops so that drift hits both
alike. The small PyTorch export (tools/torch_models.py "vision", 80 us a run) is so small that
onnxruntime's cost per node dominates it: its ratio measures the checks' node count more than
their arithmetic. The ResNet-18-style export (224x224, ~10 ms) is the kind of network customers
upload; the MobileNetV2-style one (~7 ms) is memory-bound (depthwise convolutions, 1x1 layers
on few channels), where every pass a check makes over the activations costs about as much as
the layer: it is measured with every layer checked and with the depthwise ones left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from flight.jobs.executor import SessionCache
from flight.jobs.providers import CPU, ProviderChoice
from flight.protection.abft import (
    Outcome,
    Runner,
    add_checksums,
    calibrate,
    fault_coverage,
    random_feeds,
    weight_fault_coverage,
)
from flight.protection.faults import FaultModel
from tests.bench.timing import best_seconds
from tools.model_gen import cnn_classifier, random_input

torch_models = pytest.importorskip("tools.torch_models")

SECTION = "ABFT (checksums as a graph transformation), target overhead <= 15 %"
TRIALS = 1000  # per fault model; tools or a longer run may ask for 10 000
WEIGHT_TRIALS = 200  # each builds a session (~25 ms on the CNN, ~80 ms on the large models)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    """A plain session with the payload's options (optimised at load, prepacking on)."""
    options = SessionCache(1, ProviderChoice(CPU), 1).options()
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=[CPU])


def payload_sessions(
    models: Mapping[str, onnx.ModelProto], directory: Path
) -> dict[str, ort.InferenceSession]:
    """Sessions as the payload creates them: optimised graph, owned weights, no prepacking."""
    cache = SessionCache(len(models), ProviderChoice(CPU), 1)
    sessions = {}
    for key, model in models.items():
        path = directory / f"{key}.onnx"
        path.write_bytes(model.SerializeToString())
        sessions[key] = cache.get(key, path).session
    return sessions


def make_runner(model: onnx.ModelProto) -> Runner:
    bound = session(model)

    def run(feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return bound.run(None, dict(feeds))

    return run


@cache
def exported(kind: str) -> onnx.ModelProto:
    return onnx.load_model_from_string(torch_models.exported_image_model(kind))


MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "demo CNN": lambda: cnn_classifier(seed=1),
    "PyTorch MobileNetV3-style (small)": lambda: exported("vision"),
    "PyTorch ResNet-18-style": lambda: exported("resnet"),
    "PyTorch MobileNetV2-style": lambda: exported("mobilenet"),
}
# (model, add_checksums options, bound on the payload's ratio: only a gross regression fails)
CASES: dict[str, tuple[str, dict[str, Any], float]] = {
    "demo CNN": ("demo CNN", {}, 1.4),
    "demo CNN, each channel alone": ("demo CNN", {"groups": 0, "min_positions": 32}, 1.5),
    "small MobileNetV3-style": ("PyTorch MobileNetV3-style (small)", {}, 3.0),
    "small MobileNetV3-style, min_macs 1000": (
        "PyTorch MobileNetV3-style (small)", {"min_macs": 1000}, 3.0),
    "ResNet-18-style": ("PyTorch ResNet-18-style", {}, 1.4),
    "ResNet-18-style, each channel alone": (
        "PyTorch ResNet-18-style", {"groups": 0, "min_positions": 32}, 1.5),
    "MobileNetV2-style": ("PyTorch MobileNetV2-style", {}, 2.5),
    "MobileNetV2-style, min_fan_in 10": ("PyTorch MobileNetV2-style", {"min_fan_in": 10}, 2.0),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
def test_abft_overhead(benchmark, report, case: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Time ratio checked/original on one image, in the payload's sessions and in plain ones,
    best of 7 interleaved timeit loops per side."""
    name, options, bound = CASES[case]
    model = MODELS[name]()
    abft = add_checksums(model, **options)
    feeds = {model.graph.input[0].name: random_input(model, seed=3)}
    payload = payload_sessions({"original": model, "abft": abft.model}, tmp_path)
    plain = {"original": session(model), "abft": session(abft.model)}
    # The original outputs come out unchanged, bit for bit, in both.
    for sessions in (payload, plain):
        ours = sessions["abft"].run(None, feeds)
        theirs = sessions["original"].run(None, feeds)
        assert [a.tobytes() for a in ours[: abft.residual_index]] == [a.tobytes() for a in theirs]
    fast = not benchmark.enabled  # --benchmark-disable: a quick smoke run

    def measure() -> list[float]:
        runs = [s.run for s in (payload["original"], payload["abft"], plain["original"],
                                plain["abft"])]  # fmt: skip
        fns = [lambda run=run: run(None, feeds) for run in runs]
        return best_seconds(fns, repeat=2 if fast else 7, loop_s=0.01 if fast else 0.3)

    benchmark.group = "ABFT overhead (timeit)"
    bare, checked, plain_bare, plain_checked = benchmark.pedantic(measure, rounds=1, iterations=1)
    ratio, plain_ratio = checked / bare, plain_checked / plain_bare
    benchmark.extra_info.update(
        original_ms=round(bare * 1e3, 4),
        abft_ms=round(checked * 1e3, 4),
        ratio=round(ratio, 3),
        plain_session_ratio=round(plain_ratio, 3),
        checked_layers=len(abft.layers),
        checked_share=round(abft.checked_share, 4),
    )
    report(
        SECTION,
        f"{case}: {len(abft.layers)} layers checked ({abft.checked_share:.0%} of the"
        f" multiply-adds), original {bare * 1e3:.3f} ms, with checks {checked * 1e3:.3f} ms,"
        f" ratio {ratio:.3f} (plain session {plain_ratio:.3f}; TMR ~3)",
    )
    # Noise must not fail the run: only a gross regression does.
    assert ratio < bound, f"{case}: overhead ratio {ratio:.2f}, target <= 1.15"


@pytest.mark.parametrize(
    "name", ["demo CNN", "PyTorch ResNet-18-style", "PyTorch MobileNetV2-style"]
)
def test_abft_detection_coverage(benchmark, report, name: str) -> None:  # type: ignore[no-untyped-def]
    """Seeded compute faults in the checked layers' outputs and bit flips in their weights,
    classified masked, detected or SDC."""
    model = MODELS[name]()
    abft = add_checksums(model)
    calibration = calibrate(make_runner(abft.model), abft, random_feeds(model, 32, seed=100))
    feeds = {model.graph.input[0].name: random_input(model, seed=3)}
    fast = not benchmark.enabled
    trials, weight_trials = (40, 10) if fast else (TRIALS, WEIGHT_TRIALS)

    def campaign() -> list[str]:
        lines = []
        for fault in FaultModel:
            result = fault_coverage(abft, make_runner, feeds, fault, trials, seed=1,
                                    threshold=calibration.threshold)  # fmt: skip
            lines.append(result.summary())
            benchmark.extra_info[fault.name] = {o.value: result.counts[o] for o in Outcome}
            if fault in (FaultModel.VALUE, FaultModel.ROW):
                # Random bits are mostly huge or non-finite: nearly all must be caught.
                assert result.coverage() > 0.9, result.summary()
            # What escapes is rounding-sized: no output moves by more than 1e-3.
            assert result.sdc_above(1e-3) <= trials // 100, result.summary()
        weights = weight_fault_coverage(abft, make_runner, feeds, weight_trials, seed=1,
                                        threshold=calibration.threshold)  # fmt: skip
        lines.append(f"weights, {weights.summary()}")
        benchmark.extra_info["weights"] = {o.value: weights.counts[o] for o in Outcome}
        return lines

    benchmark.group = "ABFT detection coverage"
    lines = benchmark.pedantic(campaign, rounds=1, iterations=1)
    report(SECTION, f"{name}, {len(abft.layers)} layers, threshold {calibration.threshold:.2e}"
                    f" ({calibration.margin:g} x the largest of {calibration.runs} healthy"
                    " residuals); TMR detects every unmasked fault of one run")  # fmt: skip
    for line in lines:
        report(SECTION, f"  {line}")
