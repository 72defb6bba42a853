"""The DSM as a dense-prediction backbone: its stage maps as named pyramid levels, torchvision's
FPN on top of them, and a classification checkpoint loaded into the stages.

paper: DSM "transfers to detection and segmentation" (49.9 mIoU on ADE20K with Semantic FPN) and
says no more / ours: everything here, in the layout of torchvision's ``BackboneWithFPN`` so that
torchvision's detection models take it unchanged.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from ..models import DSM

__all__ = ["DSMFeatures", "DSMBackboneWithFPN", "check_image_size", "load_backbone_weights"]

# Keys of a classification state dict that a features-only DSM does not have: the pooled
# LayerNorm and the linear head. Everything else must match.
CLASSIFIER_KEYS = ("norm.", "head.", "head_dropout.")


def check_image_size(height: int, width: int, min_size: int, what: str = "image") -> None:
    """``ValueError`` unless ``height, width >= min_size`` (the pyramid's largest stage stride:
    a smaller image leaves the coarsest stage without a single position)."""
    if min(height, width) < min_size:
        raise ValueError(
            f"{what} of size {(height, width)} is smaller than the pyramid's largest stride "
            f"{min_size}; expected H, W >= {min_size} (pad or resize it, or use a backbone "
            f"with a smaller stem_stride)")


class DSMFeatures(nn.Module):
    """A features-only DSM as pyramid levels: ``(B, 3, H, W) -> {"0": (B, C_0, H_0, W_0), ...}``.

    Level ``"k"`` is the k-th of ``stages`` (stage ``i`` has stride ``stem_stride * 2**i``), with
    the names torchvision's detection heads and ``MultiScaleRoIAlign`` expect (``"0"``...).

    Args:
        body: a DSM built with ``features_only=True`` (no head: its parameters would get no
            gradient, which distributed training rejects).
        stages: which of the 4 stages to return, e.g. ``(1, 2, 3)`` for RetinaNet's C3-C5.
        out_norm: LayerNorm over the channels of each returned map. paper: not stated / ours:
            on / why: the blocks are pre-norm, so the residual stream the stages return is never
            normalised and its scale grows with depth; the classification model normalises only
            the pooled last stage. Swin and PoolFormer add the same per-output norm for their
            dense heads.
    """

    def __init__(self, body: DSM, stages: Sequence[int] = (0, 1, 2, 3), *,
                 out_norm: bool = True) -> None:
        super().__init__()
        if not getattr(body, "features_only", False):
            raise ValueError("body must be a DSM built with features_only=True "
                             "(create_model(name, features_only=True))")
        stages = tuple(int(i) for i in stages)
        if not stages or sorted(set(stages)) != list(stages) or not all(
                0 <= i < len(body.feature_info) for i in stages):
            raise ValueError(f"stages must be increasing indices in [0, {len(body.feature_info)})"
                             f", got {stages}")
        self.body = body
        self.stages = stages
        self.channels = [body.feature_info[i]["num_chs"] for i in stages]
        self.strides = [body.feature_info[i]["reduction"] for i in stages]
        self.min_input_size = body.min_input_size
        self.norms = nn.ModuleList(
            nn.LayerNorm(c) if out_norm else nn.Identity() for c in self.channels)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        if isinstance(x, Tensor) and x.ndim == 4:
            check_image_size(int(x.shape[-2]), int(x.shape[-1]), self.min_input_size)
        maps = self.body.forward_stages(x)  # channels-last (B, H_i, W_i, C_i)
        return OrderedDict(
            (str(k), norm(maps[i]).permute(0, 3, 1, 2))
            for k, (i, norm) in enumerate(zip(self.stages, self.norms, strict=True)))


class DSMBackboneWithFPN(nn.Module):
    """DSM stages -> ``torchvision.ops.FeaturePyramidNetwork``, as torchvision's
    ``BackboneWithFPN``: ``(B, 3, H, W) -> {"0": (B, out_channels, H_0, W_0), ..., extra}``.

    The FPN adds 1x1 laterals and the top-down nearest-neighbour sum (to each finer map's exact
    size, so odd sizes work), then a 3x3 conv per level; ``extra_blocks`` adds coarser levels
    (``LastLevelP6P7`` -> ``"p6"``, ``"p7"``; ``LastLevelMaxPool`` -> ``"pool"``). The FPN keeps
    torchvision's initialisation (Kaiming-uniform, ``a=1``).

    Attributes:
        out_channels: channels of every output level (what torchvision's detectors read).
        strides: stride of each output level, extra levels included.
    """

    def __init__(self, features: DSMFeatures, out_channels: int,
                 extra_blocks: ExtraFPNBlock | None = None, extra_strides: int = 0) -> None:
        super().__init__()
        self.body = features
        self.fpn = FeaturePyramidNetwork(features.channels, out_channels,
                                         extra_blocks=extra_blocks)
        self.out_channels = out_channels
        last = features.strides[-1]
        self.strides = list(features.strides) + [last * 2 ** (k + 1) for k in range(extra_strides)]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x))


def load_backbone_weights(body: DSM, source: str | os.PathLike | Mapping[str, Tensor]
                          ) -> dict[str, list[str]]:
    """Loads a classification state dict into the features-only DSM ``body``; returns the keys
    ``{"loaded": [...], "dropped": [...]}`` (dropped: the classifier's ``norm``/``head``).

    ``source``: a state dict, or a file holding one as saved by ``torch.save(model.state_dict())``,
    by ``dsm_ref.ablation``'s ``save_weights`` (half precision) or a training checkpoint (its
    ``"model"`` entry). Values are cast to the body's dtypes; ``module.``/``_orig_mod.`` prefixes
    (DDP, ``torch.compile``) are stripped. The spectral mixers resize their weights on load, so a
    checkpoint trained at 32 px loads into a body built for 64 px or 96x128.

    Raises ``ValueError`` when the checkpoint is another architecture: stage keys missing on either
    side, or shapes that differ other than a spectral weight's size.
    """
    if isinstance(source, (str, os.PathLike)):
        state = torch.load(source, map_location="cpu", weights_only=True)
    else:
        state = source
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a state dict, got {type(state).__name__}")
    if isinstance(state.get("model"), Mapping):  # a training checkpoint
        state = state["model"]
    cleaned = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        cleaned[key] = value
    reference = body.state_dict()
    dropped = sorted(k for k in cleaned if k.startswith(CLASSIFIER_KEYS) and k not in reference)
    unexpected = sorted(k for k in cleaned if k not in reference and k not in dropped)
    missing = sorted(k for k in reference if k not in cleaned)
    if unexpected or missing:
        raise ValueError(
            "the checkpoint is not this backbone's architecture (other depths, dims or mixer?): "
            f"{len(missing)} keys missing from it (e.g. {missing[:3]}), {len(unexpected)} keys "
            f"it has that the backbone lacks (e.g. {unexpected[:3]}); expected a classification "
            "state dict of the same variant and options")
    kept = {k: v.to(reference[k].dtype) if v.is_floating_point() else v
            for k, v in cleaned.items() if k in reference}
    try:
        body.load_state_dict(kept, strict=True)
    except RuntimeError as err:
        raise ValueError(f"the checkpoint's shapes do not fit this backbone: {err}") from err
    return {"loaded": sorted(kept), "dropped": dropped}
