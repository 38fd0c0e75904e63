"""Models exported from PyTorch, as customers bring them: the validator and the executor are
tested on these as well as on the onnx.helper models of model_gen.

A small MobileNetV3-style classifier (Conv + BatchNormalization + HardSwish, a depthwise
convolution, squeeze-and-excitation with HardSigmoid, nearest Resize and Concat, global pooling,
Linear, Softmax); two classifiers the size of real ones, for 224x224 images: ResNet-18-style
(32 to 256 channels, 3x3 convolutions with ReLU, residual additions; about 10 ms a run on one
core) and MobileNetV2-style (inverted residual blocks: 1x1 expansions and depthwise 3x3 with
ReLU6, linear 1x1 projections, residual additions; about 7 ms); and an MLP (Linear, ReLU,
LayerNormalization from opset 17, Dropout). Built from a fixed seed and exported with
torch.onnx's TorchScript exporter and a dynamic batch axis. Needs torch (a development
dependency).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.onnx import TrainingMode

IMAGE_SHAPE = (3, 64, 64)
LARGE_IMAGE_SHAPE = (3, 224, 224)
RESNET_WIDTHS = (32, 64, 128, 256)
#: MobileNetV2's stages: (expansion, output channels, blocks, stride of the first).
MOBILENET_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                    (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
FEATURES = 64
KINDS = ("vision", "resnet", "mobilenet", "mlp")


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


class _BasicBlock(nn.Module):
    """Two 3x3 Conv + BatchNormalization, ReLU, and the input (or its 1x1 projection) added."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNetStyle(nn.Module):
    """A ResNet-18-style classifier: image [N,3,224,224] -> logits [N,10]; a 7x7 stem with max
    pooling, four stages of two basic blocks (RESNET_WIDTHS channels), global pooling, Linear."""

    def __init__(self) -> None:
        super().__init__()
        first = RESNET_WIDTHS[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, first, 7, 2, 3, bias=False),
            nn.BatchNorm2d(first),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks: list[nn.Module] = []
        c_in = first
        for stage, width in enumerate(RESNET_WIDTHS):
            blocks += [
                _BasicBlock(c_in, width, 1 if stage == 0 else 2),
                _BasicBlock(width, width, 1),
            ]
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class _InvertedResidual(nn.Module):
    """1x1 expansion, depthwise 3x3 (ReLU6 after both), linear 1x1 projection, and the input
    added when the shape allows."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.layers = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.residual else y


class MobileNetV2Style(nn.Module):
    """A MobileNetV2-style classifier: image [N,3,224,224] -> logits [N,10]; MOBILENET_STAGES
    after a 3x3 stem of 32 channels, a 1x1 Conv to 1280, global pooling, Linear."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU6(),
        ]
        c_in = 32
        for expansion, c_out, blocks, stride in MOBILENET_STAGES:
            for block in range(blocks):
                layers.append(
                    _InvertedResidual(c_in, c_out, stride if block == 0 else 1, expansion)
                )
                c_in = c_out
        layers += [nn.Conv2d(c_in, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(1280, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


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
    """The model `kind` (one of KINDS) with weights from `seed`, in inference mode."""
    torch.manual_seed(seed)
    model: nn.Module
    if kind == "vision":
        model = VisionNet()
    elif kind == "resnet":
        model = ResNetStyle()
    elif kind == "mobilenet":
        model = MobileNetV2Style()
    elif kind == "mlp":
        model = MlpNet(layer_norm=opset >= 17)
    else:
        raise ValueError(f"model kind: expected one of {KINDS}, found {kind!r}")
    # Non-trivial running statistics and affine parameters, as a trained network has.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            if kind in ("resnet", "mobilenet"):
                # Scales that keep the activations of a deep network near unit size, as
                # training does.
                nn.init.uniform_(module.weight, 1.0, 2.0)
                nn.init.uniform_(module.bias, -0.2, 0.2)
    return model.eval()


def example_input(kind: str, batch: int = 1, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shapes = {
        "vision": IMAGE_SHAPE,
        "resnet": LARGE_IMAGE_SHAPE,
        "mobilenet": LARGE_IMAGE_SHAPE,
        "mlp": (FEATURES,),
    }
    return torch.randn((batch, *shapes[kind]), generator=generator)


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


def exported_image_model(kind: str, seed: int = 3, opset: int = 13) -> bytes:
    """The image model `kind` built from `seed` and exported, its input named `image`."""
    return export(build(kind, seed=seed, opset=opset), example_input(kind), opset, "image")
