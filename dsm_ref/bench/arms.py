"""What the benchmarks compare, by label: the token-mixer arms and the model arms, how each is
built, and what one call costs in FLOPs.

A mixer arm is a registry mixer (a name of :data:`dsm_ref.models.TOKEN_MIXERS`) with options,
under a label (:class:`MixerArm`); every ``bench mixers`` record stores the label -> (mixer,
options) map of its arms in ``settings["mixer_arms"]``. A model arm is a label read by
:func:`build_model`: a registered variant, ``VARIANT-MIXER`` for the same body with another
registry mixer, or a torchvision peer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..flops import FlopCount, image_model_flops, token_mixer_flops
from ..models import TOKEN_MIXERS, create_model, mixer_options

__all__ = [
    "GFNetUpstreamFilter",
    "MixerArm",
    "MIXER_ARMS",
    "MIXERS",
    "TORCHVISION_MODELS",
    "mixer_arms",
    "mixer_flops",
    "build_model",
    "model_flops",
    "stage_shapes",
]


class GFNetUpstreamFilter(nn.Module):
    """GFNet's global filter as its authors' ``GlobalFilter`` runs it (Rao et al., 2021), plus
    the output projection every mixer here has: the reference our ``gfnet`` mixer is timed
    against, so that a gap between the two is ours, not GFNet's.

    ``x: (B, H, W, C) -> (B, H, W, C)``: viewed as GFNet's ``(B, N, C)`` tokens, cast to float32,
    ``rfft2`` (orthonormal), times the complex weight ``(H, W // 2 + 1, C)`` (stored as ``(...,
    2)`` real, ``0.02 * N(0, 1)``), ``irfft2`` back, reshaped, cast to the input dtype, then
    ``Linear(C, C)``. Unlike :class:`dsm_ref.mixers.GlobalFilter` it neither checks its input nor
    resizes its weight: it runs at its build size only.
    """

    def __init__(self, dim: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        height, width = input_size
        self.complex_weight = nn.Parameter(torch.randn(height, width // 2 + 1, dim, 2) * 0.02)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        tokens = x.reshape(b, h * w, c)  # GFNet's blocks hand the filter (B, N, C)
        y = tokens.view(b, h, w, c).to(torch.float32)
        y = torch.fft.rfft2(y, dim=(1, 2), norm="ortho")
        y = y * torch.view_as_complex(self.complex_weight)
        y = torch.fft.irfft2(y, s=(h, w), dim=(1, 2), norm="ortho").reshape(b, h * w, c)
        return self.proj(y.view(b, h, w, c).to(x.dtype))


@dataclass(frozen=True)
class MixerArm:
    """One benchmarked token mixer: the registry mixer ``token_mixer`` built with ``options``,
    named ``label`` in records, tables and plots. An unknown mixer or option raises
    ``ValueError`` when the arm is made. ``implementation``: another module computing the same
    mixer (e.g. :class:`GFNetUpstreamFilter` for ``gfnet``), built as ``implementation(dim,
    input_size, **options)`` instead of the registry's."""

    label: str
    token_mixer: str
    options: dict[str, Any] = field(default_factory=dict)
    implementation: type[nn.Module] | None = None

    def __post_init__(self) -> None:
        if self.implementation is None:
            mixer_options(self.token_mixer, self.options)  # checks the mixer and option names

    def build(self, dim: int, input_size: tuple[int, int]) -> nn.Module:
        """The mixer ``TOKEN_MIXERS[token_mixer](dim, input_size, **options)`` (or the
        ``implementation``'s)."""
        build = self.implementation or TOKEN_MIXERS[self.token_mixer]
        return build(dim, input_size, **self.options)

    def describe(self) -> dict[str, Any]:
        """``{"token_mixer", "options"}`` (and ``"implementation"``, a class path, when the arm
        has one): what a record stores for the label."""
        described: dict[str, Any] = {"token_mixer": self.token_mixer,
                                     "options": dict(self.options)}
        if self.implementation is not None:
            described["implementation"] = (f"{self.implementation.__module__}."
                                           f"{self.implementation.__qualname__}")
        return described


MIXER_ARMS: dict[str, MixerArm] = {arm.label: arm for arm in (
    MixerArm("dsm_auto", "dsm"),
    MixerArm("dsm_matmul", "dsm", {"dct_method": "matmul"}),
    MixerArm("dsm_fft", "dsm", {"dct_method": "fft"}),
    MixerArm("dsm_static", "static", {"dct_method": "matmul"}),
    MixerArm("dsm_out_of_place", "dsm", {"overwrite_spectrum": False}),
    MixerArm("dsm_log", "dsm", {"dct_method": "matmul", "descriptor": "log"}),
    MixerArm("gfnet", "gfnet"),
    MixerArm("gfnet_upstream", "gfnet", implementation=GFNetUpstreamFilter),
    MixerArm("attention", "attention"),
    MixerArm("dwconv7", "dwconv", {"kernel_size": 7}),
)}
"""Benchmarked mixers by label. ``dsm_auto`` is the DSM mixer as built by default
(``dct_method="auto"``: the matmul DCT below the crossover of
:data:`dsm_ref.dct.AUTO_CROSSOVER`, on CPU scipy's DCT from 224 per side); ``dsm_matmul`` is
the same mixer with the matmul DCT at every size, and ``dsm_static`` its twin without the DSWG
(also the matmul DCT), so their ratio is what the band selector costs; ``dsm_log`` is
``dsm_matmul`` with the DSWG descriptor it had before, ``log(1 + |S|)`` of every coefficient of
every channel; ``dsm_out_of_place`` is ``dsm_auto`` writing its spectral product into a new
tensor at inference instead of into the DCT's output (the same in training); ``gfnet_upstream``
is GFNet's filter as its authors' code computes it
(:class:`GFNetUpstreamFilter`), beside ours (``gfnet``)."""

MIXERS: dict[str, Callable[..., nn.Module]] = {
    label: arm.build for label, arm in MIXER_ARMS.items()}
"""Each arm's constructor, ``Mixer(dim, input_size)``, by label."""

TORCHVISION_MODELS = ("swin_t", "convnext_tiny")


def mixer_arms(labels: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``{label: {"token_mixer", "options"}}`` for the known ``labels`` (others are left out)."""
    return {label: MIXER_ARMS[label].describe() for label in labels if label in MIXER_ARMS}


def mixer_flops(name: str, dim: int, size: tuple[int, int], batch: int = 1,
                train: bool = False) -> FlopCount:
    """FLOPs of one call of mixer ``name`` (a key of :data:`MIXERS`) on ``(batch, *size, dim)``:
    forward, plus backward when ``train``. Counted on ``meta`` tensors: nothing is computed."""
    return token_mixer_flops(lambda: MIXERS[name](dim, size), (batch, *size, dim), train)


def build_model(name: str, img_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """A registered DSM variant (``"dsm_s"``), the same body with another token mixer
    (``"dsm_s-gfnet"``: ``create_model("dsm_s", token_mixer="gfnet")``), or a torchvision model
    (``"swin_t"``, ``"convnext_tiny"``, random weights)."""
    if name in TORCHVISION_MODELS:
        models = importlib.import_module("torchvision.models")
        return getattr(models, name)(weights=None, num_classes=num_classes)
    base, _, mixer = name.partition("-")
    overrides: dict[str, Any] = dict(img_size=img_size, num_classes=num_classes)
    if mixer:
        overrides["token_mixer"] = mixer
    return create_model(base, **overrides)


def model_flops(name: str, img_size: int = 224, train: bool = False) -> FlopCount:
    """FLOPs of one image through model ``name`` (see :func:`build_model`): forward, plus the
    loss and backward when ``train``. Counted on ``meta`` tensors: nothing is computed."""
    return image_model_flops(lambda: build_model(name, img_size), img_size, train)


def stage_shapes(name: str, img_size: int, stages: int | None = None) -> list[tuple[int, int]]:
    """``(N, C)`` of the token mixer in each of the first ``stages`` stages (all when ``None``)
    of DSM variant ``name`` at ``img_size``: an ``N x N`` grid of ``C`` channels, read from the
    model's ``feature_info`` (built on ``meta`` tensors: nothing is allocated)."""
    with torch.device("meta"):
        model = create_model(name, img_size=img_size)
    info = model.feature_info[:stages]
    return [(img_size // stage["reduction"], stage["num_chs"]) for stage in info]
