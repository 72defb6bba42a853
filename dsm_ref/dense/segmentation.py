"""Semantic segmentation on a DSM: the Semantic FPN head (the semantic branch of Panoptic FPN,
Kirillov et al. 2019), as PVT, PoolFormer and GFNet use it for ADE20K.

paper: DSM reports 49.9 mIoU on ADE20K and names no head / ours: Semantic FPN, the head of the
peers it is compared with on ADE20K, so a number from this model is comparable to theirs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from .backbone import DSMFeatures, check_image_size

__all__ = ["SemanticFPNHead", "SemanticFPN"]


def _conv_gn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (no bias) -> GroupNorm -> ReLU. paper (Panoptic FPN): GN with 32 groups / ours:
    ``gcd(32, channels)`` groups / why: the same 32 at the usual 128 channels, and still valid
    for the narrow heads of the tests and CPU runs."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(math.gcd(32, out_channels), out_channels),
        nn.ReLU(inplace=True),
    )


class SemanticFPNHead(nn.Module):
    """FPN levels ``[(B, C, H_i, W_i)]``, finest first, strides ``s * 2**i`` -> logits
    ``(B, num_classes, H_0, W_0)`` at the finest level's resolution.

    Level ``i`` runs ``max(1, i)`` conv-GN-ReLU blocks, each but level 0's followed by a 2x
    bilinear upsample, so every level arrives at the finest resolution; the levels are summed,
    dropped out and classified by a 1x1 conv. Each upsample goes to the next finer map's exact
    size (not a fixed factor 2), so inputs whose size is not a multiple of the strides work.

    Args:
        in_channels: channels of every FPN level.
        num_levels: number of levels (4 for a DSM).
        num_classes: output classes ``K``.
        channels: width of the upsampling branches. Panoptic FPN: 128.
        dropout: channel dropout before the classifier. ours: 0.1 / why: mmsegmentation's
            setting for the PVT/PoolFormer ADE20K runs.
    """

    def __init__(self, in_channels: int, num_levels: int, num_classes: int, *,
                 channels: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.branches = nn.ModuleList(
            nn.ModuleList(_conv_gn_relu(in_channels if j == 0 else channels, channels)
                          for j in range(max(1, i)))
            for i in range(num_levels))
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.classifier.weight, std=0.01)  # mmsegmentation's conv_seg init
        nn.init.zeros_(self.classifier.bias)

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        if len(levels) != len(self.branches):
            raise ValueError(f"expected {len(self.branches)} FPN levels, got {len(levels)}")
        total = None
        for i, (level, branch) in enumerate(zip(levels, self.branches, strict=True)):
            x = level
            for j, block in enumerate(branch):
                x = block(x)
                if i > 0:  # up one level: to level i-1-j's exact size
                    x = F.interpolate(x, size=levels[i - 1 - j].shape[-2:], mode="bilinear",
                                      align_corners=False)
            total = x if total is None else total + x
        return self.classifier(self.dropout(total))


class SemanticFPN(nn.Module):
    """DSM stages -> FPN (``torchvision.ops.FeaturePyramidNetwork``) -> :class:`SemanticFPNHead`
    -> bilinear upsample: ``(B, 3, H, W) -> (B, num_classes, H, W)`` logits.

    Any ``H, W`` at least the largest stage stride runs (non-square, not multiples of 32): the
    spectral mixers resize their weights, the FPN and the head upsample to exact sizes, and the
    logits are interpolated to exactly ``(H, W)``.

    Args:
        features: the backbone's levels (:class:`~dsm_ref.dense.backbone.DSMFeatures`, all 4).
        num_classes: classes, background included if the task has one.
        neck_channels: FPN width. Semantic FPN: 256.
        head_channels, dropout: see :class:`SemanticFPNHead`.
    """

    def __init__(self, features: DSMFeatures, num_classes: int, *, neck_channels: int = 256,
                 head_channels: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = features
        self.neck = FeaturePyramidNetwork(features.channels, neck_channels)
        self.head = SemanticFPNHead(neck_channels, len(features.channels), num_classes,
                                    channels=head_channels, dropout=dropout)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected an image batch (B, C, H, W), got {shape}")
        height, width = int(x.shape[-2]), int(x.shape[-1])
        check_image_size(height, width, self.backbone.min_input_size)
        levels = list(self.neck(self.backbone(x)).values())
        logits = self.head(levels)
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
