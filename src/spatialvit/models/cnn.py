"""CNN baselines: ResNet-18 (CIFAR stem or ImageNet stem) and a small ResNet that trains in seconds on a CPU.

Both take any input from 8x8 up (global average pooling at the end), so they run on the same data as the ViTs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and an identity (or 1x1 projection) shortcut: ``[B, C_in, H, W]`` ->
    ``[B, C_out, H/stride, W/stride]``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with ``BasicBlock`` stages.

    Args:
        widths: channels per stage; the first stage keeps the resolution, each later one halves it.
        blocks: number of blocks per stage.
        stem: ``"cifar"`` (3x3 conv, stride 1: for 8x8-64x64 inputs) or ``"imagenet"`` (7x7 stride 2 + max-pool).
        img_size: the input size the model is meant for (recorded, and checked to be at least 8).
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks: Sequence[int] = (2, 2, 2, 2),
        in_chans: int = 3,
        num_classes: int = 10,
        stem: str = "cifar",
        img_size: int | tuple[int, int] = 32,
    ) -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if min(self.img_size) < 8:
            raise ValueError(f"img_size must be at least 8, got {self.img_size}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        if stem == "cifar":
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, widths[0], 7, 2, 3, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        stages, c_in = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stages.append(BasicBlock(c_in, w, stride=2 if (i > 0 and j == 0) else 1))
                c_in = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> feature map ``[B, C_last, H', W']``."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"images must be [B, {self.in_chans}, H, W], got {tuple(x.shape)}")
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> logits ``[B, num_classes]``."""
        return self.head(self.pool(self.forward_features(x)).flatten(1))


register_model("resnet18_cifar", ResNet, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), stem="cifar")
register_model(
    "resnet18", ResNet, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), stem="imagenet", img_size=224, num_classes=1000
)
register_model("resnet_small", ResNet, widths=(16, 32, 64), blocks=(1, 1, 1), stem="cifar")
