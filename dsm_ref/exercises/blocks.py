"""Exercises of notebook 04, the DSM block and the model family: checks and solutions.

1. ``static_mixer_macs(channels, height, width) -> int``: multiply-adds of the static DSM mixer
   ``DynamicSpectrumMixer(C, (H, W), dynamic=False)`` on one image's tokens ``(1, H, W, C)``,
   from a formula (two DCTs by matmuls and the projection); checked against
   ``dsm_ref.flops.token_mixer_flops``.
2. ``dsm_block_parameter_count(channels, height, width, num_groups, spectrum_length,
   mlp_ratio) -> int``: the parameters of a ``DSMBlock(C, (H, W))`` from a formula (two
   LayerNorms, ``W0``, the DSWG, the projection, the channel MLP); checked against the block's
   parameters.
3. ``resize_static_weight(weight (H0, W0, ...), size) -> (H, W, ...)``: the bilinear resize of a
   static spectral weight, channels last; checked against
   ``dsm_ref.mixers.resize_spectral_weight`` and by moving a ``dsm_nano`` checkpoint from 64 px
   to 96 px with it (same logits).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dswg import DynamicSpectrumWeights
from ..flops import count_params, token_mixer_flops
from ..mixers import DynamicSpectrumMixer, resize_spectral_weight
from ..models import DSMBlock, create_model
from ._common import Mismatch, as_tensor, call, expect_close, expect_equal, run_check, same

__all__ = [
    "check_static_mixer_macs", "solution_static_mixer_macs",
    "check_dsm_block_parameter_count", "solution_dsm_block_parameter_count",
    "check_resize_static_weight", "solution_resize_static_weight",
]

# float32 and float64 resizes differ by rounding (a few 1e-7 on values near 1); a real mistake
# differs by far more
_TOL = dict(atol=1e-5, rtol=1e-4)


def _integer(value, case: str) -> int | float:
    """The learner's count as an int; a float with a fraction is a wrong answer, not a type."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Mismatch(f"On {case} your function returned {value!r}, not a number.") from None
    return int(number) if number.is_integer() else number


# --- 1. multiply-adds of the static mixer --------------------------------------------------------

def solution_static_mixer_macs(channels: int, height: int, width: int) -> int:
    """dct2 and idct2 by matmuls, ``H*W*(H + W)`` multiply-adds per channel each, and the
    projection ``Linear(C, C)`` on every token, ``H*W*C*C``; the product with ``W0`` is
    elementwise (not counted)."""
    tokens = height * width
    transforms = 2 * tokens * (height + width) * channels
    projection = tokens * channels * channels
    return transforms + projection


def check_static_mixer_macs(function: Callable) -> bool:
    """``function(channels, height, width)`` must return the multiply-adds of
    ``DynamicSpectrumMixer(C, (H, W), dynamic=False)`` on tokens ``(1, H, W, C)``, as the FLOP
    counter gives them (FLOPs / 2)."""

    def cases() -> str:
        grids = [(64, 14, 20), (32, 7, 7), (96, 56, 56), (8, 13, 22), (3, 1, 5), (5, 2, 1),
                 (1, 1, 1)]
        for c, h, w in grids:
            case = f"C = {c} on a {h} x {w} grid"
            expected = int(token_mixer_flops(
                lambda c=c, h=h, w=w: DynamicSpectrumMixer(c, (h, w), dynamic=False),
                (1, h, w, c)).macs)
            got = _integer(call(function, case, c, h, w), case)
            hint = ("Two DCTs (forward and inverse), each H*W*(H + W) multiply-adds per channel "
                    "by two matmuls, plus the projection's C*C per token.")
            tokens = h * w
            if got != expected:
                if got == 2 * expected:
                    hint = ("That is the FLOP count; a multiply-add is 2 FLOPs: divide by 2 (the "
                            "peers' 'GFLOPs' are multiply-adds).")
                elif got == expected - tokens * (h + w) * c:
                    hint = ("You counted one DCT; the mixer does two, dct2 into the spectrum and "
                            "idct2 back.")
                elif got == expected - tokens * c * c:
                    hint = "Add the projection Linear(C, C): C*C multiply-adds per token."
                elif got == expected - tokens * c * c + tokens * c:
                    hint = ("The projection mixes all C channels for each output channel: C*C "
                            "multiply-adds per token, not C.")
                elif tokens > 1 and got == 2 * tokens * tokens * c + tokens * c * c:
                    hint = ("That is the DCT as one (HW x HW) matrix on the flattened grid; the "
                            "separable route, C_H x C_W^T, costs H + W per value instead of H*W.")
            expect_equal(got, expected, case, hint)
        return ("Your formula matches the FLOP counter on 7 grids, square, oblong and 1 x 1: "
                "2*H*W*(H + W)*C for the two DCTs, H*W*C*C for the projection.")

    return run_check("static_mixer_macs", function, cases)


# --- 2. parameters of a block --------------------------------------------------------------------

def solution_dsm_block_parameter_count(channels: int, height: int, width: int,
                                       num_groups: int = 4, spectrum_length: int = 4,
                                       mlp_ratio: float = 4.0) -> int:
    """Two LayerNorms (a weight and a bias per channel each), the mixer (``W0``: one weight per
    coefficient and channel, the DSWG, the projection ``Linear(C, C)``) and the channel MLP
    ``Linear(C, int(r C)) -> Linear(int(r C), C)``, biases included."""
    norms = 2 * (2 * channels)
    static_weight = height * width * channels
    bands = num_groups * spectrum_length**2
    hidden = max(16, round(0.5 * bands))
    dswg = 2 * bands + (bands * hidden + hidden) + (hidden * bands + bands)
    projection = channels * channels + channels
    mlp_hidden = int(channels * mlp_ratio)
    mlp = (channels * mlp_hidden + mlp_hidden) + (mlp_hidden * channels + channels)
    return norms + static_weight + dswg + projection + mlp


def _block_parameters(channels: int, height: int, width: int, num_groups: int,
                      spectrum_length: int, mlp_ratio: float) -> int:
    mixer = functools.partial(DynamicSpectrumMixer, num_groups=num_groups,
                              spectrum_length=spectrum_length)
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        block = DSMBlock(channels, (height, width), mixer, mlp_ratio=mlp_ratio)
    return count_params(block)


def _dswg_parameters(num_groups: int, spectrum_length: int) -> int:
    with torch.device("meta"):
        return count_params(DynamicSpectrumWeights(num_groups, spectrum_length,
                                                   num_groups=num_groups))


def check_dsm_block_parameter_count(function: Callable) -> bool:
    """``function(channels, height, width, num_groups=..., spectrum_length=..., mlp_ratio=...)``
    must return the number of parameters of ``DSMBlock(C, (H, W))`` whose mixer has a DSWG of
    ``G`` groups and ``L x L`` bands and whose MLP has ``int(C * mlp_ratio)`` hidden units."""

    def cases() -> str:
        settings = [(96, 56, 56, 4, 4, 4.0), (384, 14, 14, 4, 4, 4.0), (64, 14, 20, 4, 4, 4.0),
                    (32, 7, 7, 4, 8, 4.0), (8, 3, 5, 2, 2, 4.0), (7, 2, 3, 1, 4, 2.5)]
        for c, h, w, groups, length, ratio in settings:
            case = (f"C = {c} at {h} x {w}, G = {groups}, L = {length}, "
                    f"mlp_ratio = {ratio}")
            expected = _block_parameters(c, h, w, groups, length, ratio)
            got = _integer(call(function, case, c, h, w, num_groups=groups,
                                spectrum_length=length, mlp_ratio=ratio), case)
            hint = ("Two LayerNorms (2C each), W0 (H*W*C), the DSWG (notebook 03, exercise 3), "
                    "the projection (C*C + C) and the MLP (two Linear layers with biases, "
                    "int(C * mlp_ratio) hidden units).")
            bands = groups * length**2
            if got != expected:
                if got == expected - h * w * c:
                    hint = ("W0 holds one weight per DCT coefficient and channel: H*W*C, the only "
                            "part of the block that grows with the resolution.")
                elif got == expected - 4 * c:
                    hint = ("Add the two LayerNorms of the block: a weight and a bias per channel "
                            "each, 4C in all.")
                elif got == expected - _dswg_parameters(groups, length):
                    hint = ("The mixer also holds its DSWG: the descriptor LayerNorm and the "
                            "two-layer MLP of notebook 03, exercise 3.")
                elif got == expected - 2 * bands:
                    hint = ("The DSWG starts with a LayerNorm over its G * L * L descriptors: "
                            "2 * G * L * L parameters.")
                elif 0.5 * bands < 16 and got == (expected - _dswg_parameters(groups, length)
                                                  + 2 * bands + 2 * bands * round(0.5 * bands)
                                                  + round(0.5 * bands) + bands):
                    hint = ("The DSWG's hidden width never drops below 16: "
                            "max(16, round(G * L * L / 2)).")
                elif int(c * ratio) != round(c * ratio) and got == expected + 2 * c + 1:
                    hint = (f"The MLP has int(C * mlp_ratio) = {int(c * ratio)} hidden units "
                            f"(rounded down), not {round(c * ratio)}.")
            expect_equal(got, expected, case, hint)
        return ("Your formula matches DSMBlock on 6 settings; of its parts only W0 (H*W*C) "
                "depends on the resolution, the DSWG only on G and L.")

    return run_check("dsm_block_parameter_count", function, cases)


# --- 3. moving a checkpoint across resolutions ---------------------------------------------------

def solution_resize_static_weight(weight: Tensor, size: tuple[int, int]) -> Tensor:
    """Treat the trailing dims of ``(H0, W0, ...)`` as channels of one image ``(1, C', H0, W0)``,
    resize it bilinearly (``align_corners=False``, no antialiasing) and put the channels last."""
    height, width = size
    trailing = weight.shape[2:]
    channels_first = weight.flatten(2).movedim(-1, 0).unsqueeze(0)   # (1, C', H0, W0)
    resized = F.interpolate(channels_first, size=(height, width), mode="bilinear",
                            align_corners=False)                     # (1, C', H, W)
    return resized[0].movedim(0, -1).reshape(height, width, *trailing)


def _interpolated(weight: Tensor, size: tuple[int, int], **options) -> Tensor:
    """A resize with other ``F.interpolate`` options, for the hints."""
    grid = weight.flatten(2).movedim(-1, 0).unsqueeze(0)
    resized = F.interpolate(grid, size=size, **options)
    return resized[0].movedim(0, -1).reshape(*size, *weight.shape[2:])


def _resize_hint(got: Tensor, weight: Tensor, size: tuple[int, int]) -> str:
    variants = [
        (dict(mode="bilinear", align_corners=True),
         "With align_corners=True the corner coefficients stay put and the rest stretch; "
         "dsm_ref uses align_corners=False (pixel centres, as an image resize)."),
        (dict(mode="nearest"),
         "That is a nearest-neighbour resize; W0 is resized bilinearly, so a smooth filter "
         "stays smooth."),
        (dict(mode="bilinear", align_corners=False, antialias=True),
         "Without antialias: dsm_ref's resize is F.interpolate's plain bilinear mode "
         "(antialias=False, the default), also when it shrinks W0."),
        (dict(mode="bicubic", align_corners=False),
         "That is a bicubic resize; dsm_ref's is bilinear."),
    ]
    expected = resize_spectral_weight(weight, size).to(torch.float64)
    for options, hint in variants:
        variant = _interpolated(weight, size, **options).to(torch.float64)
        if not same(variant, expected, **_TOL) and same(got, variant, **_TOL):
            return hint
    return ("Put the trailing dims first as channels of one image (1, C', H0, W0), resize with "
            "F.interpolate(mode='bilinear', align_corners=False), and put them last again.")


def _checkpoint_case(function: Callable) -> None:
    """A ``dsm_nano`` built at 64 px, its state dict resized by ``function`` and loaded into a
    ``dsm_nano`` built at 96 px: on a 96 px image both must give the same logits."""
    case = "a dsm_nano checkpoint moved from 64 px to 96 px with your function"
    with torch.random.fork_rng(devices=[]):  # the learner's global random state is kept
        torch.manual_seed(0)
        small = create_model("dsm_nano").eval()
        for module in small.modules():
            if isinstance(module, DynamicSpectrumWeights):  # A(S) != 1: the DSWGs take part
                nn.init.normal_(module.fc2.weight, std=0.1)
        large = create_model("dsm_nano", img_size=96).eval()
        images = torch.randn(2, 3, 96, 96)
    targets = large.state_dict()
    state = {}
    for name, value in small.state_dict().items():
        if name.endswith("spectral_weight"):
            size = tuple(targets[name].shape[:2])
            value = as_tensor(call(function, f"{case} ({name})", value.clone(), size),
                              f"{case} ({name})", torch.float32)
            if value.shape != targets[name].shape:
                raise Mismatch(f"On {case} your {name} has shape {tuple(value.shape)}, the "
                               f"96-px model needs {tuple(targets[name].shape)}.")
        state[name] = value
    large.load_state_dict(state)
    with torch.no_grad():
        expect_close(large(images), small(images), case,
                     "The 96-px model with your resized W0 must compute what the 64-px model "
                     "computes at 96 px, where its forward resizes W0 with "
                     "dsm_ref.mixers.resize_spectral_weight.", atol=1e-5, rtol=1e-4)


def check_resize_static_weight(function: Callable) -> bool:
    """``function(weight, size)`` for a ``(H0, W0, ...)`` static spectral weight and
    ``size = (H, W)`` must return the ``(H, W, ...)`` weight of
    ``dsm_ref.mixers.resize_spectral_weight``."""

    def cases() -> str:
        generator = torch.Generator().manual_seed(6)
        settings = [
            ("a 16 x 16 x 32 weight resized to 24 x 24 (64 px -> 96 px)", (16, 16, 32), (24, 24)),
            ("a 16 x 16 x 4 weight shrunk to 8 x 8", (16, 16, 4), (8, 8)),
            ("a 16 x 16 x 3 weight resized to 20 x 28 (not square)", (16, 16, 3), (20, 28)),
            ("a 7 x 7 x 2 weight shrunk to 2 x 3", (7, 7, 2), (2, 3)),
            ("a 14 x 14 x 4 weight at its own size", (14, 14, 4), (14, 14)),
            ("a 1 x 1 x 3 weight resized to 3 x 4", (1, 1, 3), (3, 4)),
            ("a 6 x 9 x 4 x 2 weight (a complex filter stored as pairs) resized to 12 x 5",
             (6, 9, 4, 2), (12, 5)),
        ]
        for case, shape, size in settings:
            weight = torch.randn(*shape, generator=generator)
            before = weight.clone()
            expected = resize_spectral_weight(weight, size).to(torch.float64)
            got = as_tensor(call(function, case, weight, size), case)
            if not torch.equal(weight, before):
                raise Mismatch(f"On {case} your function changed its input in place; work on a "
                               "copy.")
            hint = ""
            if got.shape != expected.shape:
                hint = (f"The result keeps W0's layout: (H, W) first, then the trailing dims "
                        f"{tuple(shape[2:])} as they were.")
            elif not same(got, expected, **_TOL):
                hint = _resize_hint(got, weight, size)
            expect_close(got, expected, case, hint, **_TOL)
        _checkpoint_case(function)
        return ("Your resize equals dsm_ref's on 7 weights (up, down, oblong, 1 x 1, extra dims) "
                "and moves a dsm_nano checkpoint from 64 px to 96 px with the same logits.")

    return run_check("resize_static_weight", function, cases)

