"""Models exported from PyTorch, as customers bring them: the validator and the executor are
tested on these as well as on the onnx.helper models of model_gen.

A MobileNetV3-style classifier (Conv + BatchNormalization + HardSwish, a depthwise convolution,
squeeze-and-excitation with HardSigmoid, nearest Resize and Concat, global pooling, Linear,
Softmax) and an MLP (Linear, ReLU, LayerNormalization from opset 17, Dropout), built from a
fixed seed and exported with torch.onnx's TorchScript exporter and a dynamic batch axis.
Needs torch (a development dependency).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.onnx import TrainingMode

IMAGE_SHAPE = (3, 64, 64)
FEATURES = 64


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // 4, 1)
        self.expand = nn.Conv2d(channels // 4, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.expand(torch.relu(self.reduce(s))))


class VisionNet(nn.Module):
    """A small MobileNetV3-style classifier: image [N,3,64,64] -> probabilities [N,10]."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.Hardswish()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.Hardswish()
        )
        self.se = _SqueezeExcite(16)
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.depthwise(self.stem(x)))
        z = torch.cat([y, self.up(torch.relu(self.down(y)))], dim=1)
        return torch.softmax(self.head(z.mean(dim=(2, 3))), dim=1)


class MlpNet(nn.Module):
    """features [N,64] -> logits [N,8] through Linear, ReLU, LayerNorm (opset 17) and Dropout."""

    def __init__(self, layer_norm: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(FEATURES, 128),
            nn.ReLU(),
            nn.LayerNorm(128) if layer_norm else nn.Identity(),
            nn.Dropout(0.1),
            nn.Linear(128, 8),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build(kind: str, seed: int = 0, opset: int = 13) -> nn.Module:
    """The model `kind` ("vision" or "mlp") with weights from `seed`, in inference mode."""
    torch.manual_seed(seed)
    model: nn.Module = VisionNet() if kind == "vision" else MlpNet(layer_norm=opset >= 17)
    if kind == "vision":
        # Non-trivial running statistics, as a trained network has.
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def example_input(kind: str, batch: int = 1, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, *IMAGE_SHAPE) if kind == "vision" else (batch, FEATURES)
    return torch.randn(shape, generator=generator)


def export(model: nn.Module, example: torch.Tensor, opset: int, input_name: str) -> bytes:
    """The ONNX file torch.onnx writes, with a dynamic batch axis and BatchNormalization kept
    as an operator (not folded into the convolutions), as many exported files have it."""
    with tempfile.TemporaryDirectory() as directory, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        path = Path(directory) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            path,
            opset_version=opset,
            input_names=[input_name],
            output_names=["output"],
            dynamic_axes={input_name: {0: "batch"}, "output": {0: "batch"}},
            do_constant_folding=False,
            training=TrainingMode.PRESERVE,
            dynamo=False,
        )
        return path.read_bytes()
