"""Cell encoders. ``ResNetK`` is the width-K ResNet of Sahasrabudhe et al. (2020), Table 1.

An encoder is a factory ``(params, input_size) -> nn.Module`` with an ``out_dim``, registered in
``ENCODERS`` with the pydantic model of its hyper-parameters; ``EncoderConfig`` names one in a config.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from .specs import ENCODERS, ResNet18Params, ResNetKParams


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class StridedShortcut(nn.Conv2d):
    """A 1x1 convolution of stride s computed as the stride-1 convolution of every s-th pixel: the same
    numbers and weights (``nn.Conv2d``'s), and a backward pass that channels-last training can run (the
    strided 1x1 backward crashes the torch 2.13 CPU build in that layout)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        return F.conv2d(x[:, :, :: s[0], :: s[1]], self.weight, self.bias)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions, each followed by batch norm and ReLU, plus a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = conv_bn_relu(c_in, c_out, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(StridedShortcut(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNetK(nn.Module):
    """conv1 7x7/2 -> max-pool/2 -> four stages of widths K, 2K, 4K, 8K (strides 1, 2, 2, 2).

    At 224 px the stages run at 56, 28, 14 and 7 px. ``embedding="gap"`` gives an 8K-d vector by
    global average pooling; ``"flatten"`` the paper's flattened 7x7x8K map (needs ``input_size``).
    """

    def __init__(
        self, k: int = 32, blocks: int = 1, embedding: Literal["gap", "flatten"] = "gap", input_size: int = 224
    ):
        super().__init__()
        if k < 1 or blocks < 1:
            raise ValueError(f"ResNetK needs k >= 1 and blocks >= 1, got k={k}, blocks={blocks}")
        self.k, self.embedding = k, embedding
        self.channels_last = False  # faster oneDNN convolutions (models.inference; train.channels_last)
        self.stem = nn.Sequential(conv_bn_relu(3, k, 7, 2), nn.MaxPool2d(3, 2, 1))
        stages, c_in = [], k
        for i, width in enumerate((k, 2 * k, 4 * k, 8 * k)):
            layers = [ResidualBlock(c_in, width, 1 if i == 0 else 2)]
            layers += [ResidualBlock(width, width, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = width
        self.stages = nn.Sequential(*stages)
        side = self.feature_side(input_size)
        self.out_dim = 8 * k if embedding == "gap" else 8 * k * side * side

    @staticmethod
    def feature_side(input_size: int) -> int:
        side = input_size
        for _ in range(5):  # conv1, max-pool, stages 2-4 each halve (rounding up)
            side = (side + 1) // 2
        return side

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return self.stages(self.stem(x.contiguous(memory_format=torch.channels_last)))
        return self.stages(self.stem(x.contiguous()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.feature_map(x)
        if self.embedding == "gap":
            return features.mean(dim=(2, 3))
        return features.flatten(1)


@ENCODERS.register("resnetk")
def resnetk(params: ResNetKParams, input_size: int = 224) -> ResNetK:
    return ResNetK(params.k, params.blocks, params.embedding, input_size)


@ENCODERS.register("resnet18")
def resnet18(params: ResNet18Params, input_size: int = 224) -> ResNetK:
    """ResNet18's depth and widths (K = 64, two blocks per stage)."""
    return ResNetK(64, 2, params.embedding, input_size)
