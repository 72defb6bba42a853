"""Building blocks shared by every model: MLP, stochastic depth, layer scale, stem, downsampling.

All layers take and return channels-last tensors ``(B, H, W, C)`` except where stated.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Mlp", "DropPath", "LayerScale", "PatchStem", "Downsample"]


class Mlp(nn.Module):
    """Channel MLP ``Linear(C, hC) -> GELU -> Linear(hC, C)``; ``(..., C) -> (..., C)``."""

    def __init__(self, dim: int, hidden_dim: int, act_layer: type[nn.Module] = nn.GELU,
                 drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: zeroes a sample's residual branch with probability ``p`` in training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerScale(nn.Module):
    """Learnable per-channel scale ``gamma * x`` (CaiT), ``gamma`` starting at ``init_value``."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class PatchStem(nn.Module):
    """Patchify stem: ``Conv(k=s, stride=s)`` then LayerNorm. ``(B, 3, H, W) -> (B, H/s, W/s, C)``.

    paper: a patch embedding (size not public) / ours: non-overlapping ``stride x stride`` patches
    (4 for ImageNet-size inputs, 2 for 32-px presets) / why: the hierarchy of GFNet-H, ConvNeXt
    and Swin, so stage resolutions are 1/4, 1/8, 1/16, 1/32.
    """

    def __init__(self, in_chans: int, dim: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=stride, stride=stride)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Downsample(nn.Module):
    """LayerNorm then a 2x2 stride-2 conv: ``(B, H, W, C_in) -> (B, H/2, W/2, C_out)``.

    paper: stages and downsampling not stated / ours: non-overlapping 2x2 patch
    merging / why: ConvNeXt's and Swin's choice between stages; it halves the resolution with
    no overlap, so every input pixel counts once, at the cost of a 2x2 conv's parameters.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Conv2d(in_dim, out_dim, kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x).permute(0, 3, 1, 2)
        return self.proj(x).permute(0, 2, 3, 1)
