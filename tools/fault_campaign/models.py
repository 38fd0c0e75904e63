"""The models the campaign can run, and how the report describes them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from tools import model_gen

SMALL_MLP_WIDTHS = (64, 256, 128, 10)


@dataclass(frozen=True)
class CampaignModel:
    """A model the campaign can run, and how it is described in the report."""

    name: str
    description: str
    build: Callable[[], onnx.ModelProto]


MODELS = {
    "cnn": CampaignModel(
        "cnn",
        "the demo CNN classifier, `tools.model_gen.cnn_classifier()` (image [1,3,64,64] -> 10 "
        "classes)",
        model_gen.cnn_classifier,
    ),
    "mlp": CampaignModel(
        "mlp",
        f"a small MLP, `tools.model_gen.mlp(widths={SMALL_MLP_WIDTHS})` (Gemm+Relu, features "
        f"[1,{SMALL_MLP_WIDTHS[0]}] -> {SMALL_MLP_WIDTHS[-1]} logits)",
        lambda: model_gen.mlp(widths=SMALL_MLP_WIDTHS),
    ),
}
