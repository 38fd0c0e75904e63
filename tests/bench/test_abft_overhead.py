"""ABFT cost and detection: run time of the checked model against the original, and the share of
injected compute and weight faults it detects.

Target (issue): overhead <= 15 % on the demo CNN and on a real PyTorch export, against ~3x for
TMR, which detects every fault of a single run that changes an output. Both models run with
the payload's session options (ORT_ENABLE_ALL, one intra-op thread, as on the two-core board),
timed alternately in best-of-N loops so that drift hits both alike. The PyTorch export
(tools/torch_models.py, 76 us a run) is so small that onnxruntime's cost per node dominates it:
its ratio measures the checks' node count more than their arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
WEIGHT_TRIALS = 200  # each builds a session (~25 ms)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = SessionCache(1, ProviderChoice(CPU), 1).options()
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=[CPU])


def make_runner(model: onnx.ModelProto) -> Runner:
    bound = session(model)

    def run(feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return bound.run(None, dict(feeds))

    return run


def vision_model() -> onnx.ModelProto:
    net = torch_models.build("vision", seed=3, opset=13)
    data = torch_models.export(net, torch_models.example_input("vision"), 13, "image")
    return onnx.load_model_from_string(data)


CASES = {
    "demo CNN": (lambda: cnn_classifier(seed=1), 0, 1.5),
    "PyTorch MobileNetV3-style": (vision_model, 0, 3.0),
    "PyTorch MobileNetV3-style, min_macs 1000": (vision_model, 1000, 3.0),
}


@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
def test_abft_overhead(benchmark, report, case: str) -> None:  # type: ignore[no-untyped-def]
    """Time ratio checked/original on one image, best of 7 interleaved timeit loops per side."""
    build, min_macs, bound = CASES[case]
    model = build()
    abft = add_checksums(model, min_macs=min_macs)
    feeds = {"image": random_input(model, seed=3)}
    original, checked = session(model), session(abft.model)
    # The original outputs come out unchanged, bit for bit.
    ours = checked.run(None, feeds)
    theirs = original.run(None, feeds)
    assert [a.tobytes() for a in ours[: abft.residual_index]] == [a.tobytes() for a in theirs]
    fast = not benchmark.enabled  # --benchmark-disable: a quick smoke run

    def measure() -> list[float]:
        fns = [lambda: original.run(None, feeds), lambda: checked.run(None, feeds)]
        return best_seconds(fns, repeat=2 if fast else 7, loop_s=0.01 if fast else 0.3)

    benchmark.group = "ABFT overhead (timeit)"
    bare, with_checks = benchmark.pedantic(measure, rounds=1, iterations=1)
    ratio = with_checks / bare
    benchmark.extra_info.update(
        original_ms=round(bare * 1e3, 4),
        abft_ms=round(with_checks * 1e3, 4),
        ratio=round(ratio, 3),
        checked_layers=len(abft.layers),
    )
    report(
        SECTION,
        f"{case}: {len(abft.layers)} layers checked, original {bare * 1e3:.3f} ms, with"
        f" checks {with_checks * 1e3:.3f} ms, ratio {ratio:.3f} (TMR ~3)",
    )
    # Noise must not fail the run: only a gross regression does.
    assert ratio < bound, f"{case}: overhead ratio {ratio:.2f}, target <= 1.15"


def test_abft_detection_coverage(benchmark, report) -> None:  # type: ignore[no-untyped-def]
    """Seeded compute faults in the checked layers' outputs and bit flips in their weights of
    the demo CNN, classified masked, detected or SDC."""
    model = cnn_classifier(seed=1)
    abft = add_checksums(model)
    calibration = calibrate(make_runner(abft.model), abft, random_feeds(model, 32, seed=100))
    feeds = {"image": random_input(model, seed=3)}
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
        weights = weight_fault_coverage(abft, make_runner, feeds, weight_trials, seed=1,
                                        threshold=calibration.threshold)  # fmt: skip
        lines.append(f"weights, {weights.summary()}")
        benchmark.extra_info["weights"] = {o.value: weights.counts[o] for o in Outcome}
        return lines

    benchmark.group = "ABFT detection coverage"
    lines = benchmark.pedantic(campaign, rounds=1, iterations=1)
    report(SECTION, f"demo CNN, threshold {calibration.threshold:.2e} ({calibration.margin:g} x"
                    f" the largest of {calibration.runs} healthy residuals); TMR detects every"
                    " unmasked fault of one run")  # fmt: skip
    for line in lines:
        report(SECTION, f"  {line}")
