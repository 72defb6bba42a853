"""Exercises of notebook 03, the Dynamic Spectrum Weight Generator: checks and solutions.

1. ``band_descriptors_max(spectrum (B, H, W, C), length, groups) -> (B, G, L, L)``: band pooling
   with a *max*: the log of each group's RMS magnitude, ``log(1 + sqrt(mean over the group's
   channels of S^2))``, then the largest value of each of the ``L x L`` bands (0 for a band
   without coefficients); checked against
   ``DynamicSpectrumWeights(pool="max").band_descriptors``.
2. ``softmax_gate(logits (B, G, L*L)) -> (B, G, L*L)``: the gate with mean 1, ``L*L * softmax``
   over the bands of each group, numerically stable; checked against
   ``DynamicSpectrumWeights.band_weights`` with known logits.
3. ``dswg_parameter_count(spectrum_length, num_groups, hidden_ratio, descriptor_norm) -> int``:
   the DSWG's size from a formula; checked against the module's parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..dct import dct2
from ..dswg import DynamicSpectrumWeights
from ._common import Mismatch, as_tensor, call, expect_close, expect_equal, run_check, same

__all__ = [
    "check_band_descriptors_max", "solution_band_descriptors_max",
    "check_softmax_gate", "solution_softmax_gate",
    "check_dswg_parameter_count", "solution_dswg_parameter_count",
]


# --- 1. band pooling with a max ------------------------------------------------------------------

def solution_band_descriptors_max(spectrum: Tensor, length: int, groups: int) -> Tensor:
    """Max of the log of the group's RMS magnitude over each band; a band without coefficients
    is 0."""
    b, h, w, c = spectrum.shape
    rms = spectrum.square().reshape(b, h, w, groups, c // groups).mean(-1).sqrt()  # (B, H, W, G)
    features = torch.log1p(rms)
    rows = torch.arange(h) * length // h  # band row of each frequency ky: floor(ky * L / H)
    cols = torch.arange(w) * length // w
    out = torch.zeros(b, groups, length, length, dtype=features.dtype)
    for i in range(length):
        for j in range(length):
            in_band = features[:, rows == i][:, :, cols == j]  # (B, h_i, w_j, G)
            if in_band.shape[1] and in_band.shape[2]:          # an empty band stays 0
                out[:, :, i, j] = in_band.amax(dim=(1, 2))
    return out


def _reference_descriptors(spectrum: Tensor, length: int, groups: int, **options) -> Tensor:
    module = DynamicSpectrumWeights(spectrum.shape[-1], length, num_groups=groups, **options)
    with torch.no_grad():
        return module.band_descriptors(spectrum).to(torch.float64)


def check_band_descriptors_max(function: Callable) -> bool:
    """``function(spectrum, length, groups)`` must return the max-pooled band descriptors
    ``(B, G, L, L)`` of a ``(B, H, W, C)`` spectrum."""

    def cases() -> str:
        generator = torch.Generator().manual_seed(3)
        shapes = [((2, 16, 16, 4), 4, 2), ((3, 13, 22, 8), 3, 4), ((1, 7, 7, 4), 4, 1),
                  ((2, 3, 5, 4), 4, 2)]
        for shape, length, groups in shapes:
            spectrum = dct2(torch.randn(*shape, generator=generator), dims=(1, 2))
            b, h, w, c = shape
            case = f"a {h} x {w} spectrum with C = {c}, L = {length}, G = {groups}"
            empty = h < length or w < length
            hint = ("A band with no coefficient (here H or W is smaller than L) gets the "
                    "descriptor 0." if empty else "")
            expected = _reference_descriptors(spectrum, length, groups, pool="max")
            got = as_tensor(call(function, case, spectrum.clone(), length, groups, hint=hint),
                            case)
            if got.shape == expected.shape and not same(got, expected, atol=1e-5, rtol=1e-5):
                if same(got, _reference_descriptors(spectrum, length, groups),
                        atol=1e-5, rtol=1e-5):
                    raise Mismatch(f"On {case} you returned the mean of each band; take its "
                                   "maximum.")
                for other, mistake in (
                        ("log_of_mean", "the mean of |S| over the group's channels; take the "
                                        "root of the mean of S^2 (the RMS)"),
                        ("log", "log(1 + |S|) of every channel, averaged over the group; take "
                                "log(1 + RMS) of the group")):
                    if same(got, _reference_descriptors(spectrum, length, groups, pool="max",
                                                        descriptor=other),
                            atol=1e-5, rtol=1e-5):
                        raise Mismatch(f"On {case} you took {mistake}.")
            expect_close(got, expected, case, hint or (
                "Band row of ky is floor(ky * L / H), band column of kx is floor(kx * L / W); "
                "channels c * G // C form group g."), atol=1e-5, rtol=1e-5)
        return ("Max-pooled descriptors match DynamicSpectrumWeights(pool='max') on square, "
                "odd-sized and smaller-than-L grids.")

    return run_check("band_descriptors_max", function, cases)


# --- 2. the softmax gate -------------------------------------------------------------------------

def solution_softmax_gate(logits: Tensor) -> Tensor:
    """``L*L * softmax`` over the last axis (the bands of a group); ``torch.softmax`` subtracts
    the maximum first, so large logits do not overflow."""
    return logits.shape[-1] * torch.softmax(logits, dim=-1)


def _reference_gate(logits: Tensor) -> Tensor:
    """``DynamicSpectrumWeights.band_weights`` of a module whose last layer outputs ``logits``
    for every image: ``fc2`` has zero weights and ``logits`` as its bias."""
    groups, bands = logits.shape[-2:]
    length = round(bands**0.5)
    module = DynamicSpectrumWeights(4 * groups, length, num_groups=groups)
    rows = []
    with torch.no_grad():
        for image_logits in logits.to(torch.float32):
            nn.init.zeros_(module.fc2.weight)
            module.fc2.bias.copy_(image_logits.flatten())
            spectrum = torch.randn(1, 2 * length, 2 * length, 4 * groups)
            rows.append(module.band_weights(spectrum).reshape(groups, bands))
    return torch.stack(rows).to(torch.float64)


def check_softmax_gate(function: Callable) -> bool:
    """``function(logits)`` for ``(B, G, L*L)`` logits must return the band weights
    ``L*L * softmax`` over the bands of each group: non-negative, mean 1 per group."""

    def cases() -> str:
        generator = torch.Generator().manual_seed(5)
        random = 2 * torch.randn(2, 4, 16, generator=generator, dtype=torch.float64)
        large = torch.tensor([[[1000.0, 990.0, -1000.0, 0.0]]], dtype=torch.float64)
        logits_cases = [
            ("zero logits (G = 4, L = 4)", torch.zeros(1, 4, 16, dtype=torch.float64)),
            ("random logits (B = 2, G = 4, L = 4)", random),
            ("the same logits plus 3 (a shift must change nothing)", random + 3.0),
            ("random logits with G = 3, L = 2", torch.randn(2, 3, 4, generator=generator,
                                                            dtype=torch.float64)),
            ("one band per group (L = 1)", torch.randn(2, 2, 1, generator=generator,
                                                       dtype=torch.float64)),
            ("large logits (1000, 990, -1000, 0)", large),
        ]
        for case, logits in logits_cases:
            expected = _reference_gate(logits)
            got = as_tensor(call(function, case, logits.clone()), case)
            bands = logits.shape[-1]
            hint = ("L*L * softmax over the last axis (the bands of one group): non-negative "
                    "weights with mean exactly 1 in every group.")
            if got.shape == expected.shape and not same(got, expected, atol=1e-6, rtol=1e-5):
                if not torch.isfinite(got).all():
                    hint = ("exp(1000) overflows even in float64 (exp(100) in float32): "
                            "subtract each group's largest logit before exp (softmax is unchanged "
                            "by a shift), or use torch.softmax.")
                elif bands > 1 and same(got * bands, expected, atol=1e-6, rtol=1e-5):
                    hint = (f"Your weights have mean 1/{bands} per group; multiply the softmax by "
                            "the number of bands L*L so that their mean is 1 and the dynamic "
                            "mixer starts equal to the static one.")
                elif same(got, 2 * torch.sigmoid(logits), atol=1e-6, rtol=1e-5):
                    hint = ("That is the 2*sigmoid gate (bands independent); the softmax gate "
                            "makes the bands of a group compete.")
                else:
                    hint = ("Take the softmax over the bands of each group (the last axis), not "
                            "over the groups or the batch.")
            expect_close(got, expected, case, hint, atol=1e-6, rtol=1e-5)
        return ("Your gate equals the DSWG's: mean 1 in every group, unchanged by a shift of "
                "the logits, stable for logits of +-1000.")

    return run_check("softmax_gate", function, cases)


# --- 3. the DSWG's size --------------------------------------------------------------------------

def solution_dswg_parameter_count(spectrum_length: int, num_groups: int,
                                  hidden_ratio: float = 0.5, descriptor_norm: bool = True) -> int:
    """LayerNorm (gamma, beta) over the ``G * L * L`` descriptors, then Linear -> GELU -> Linear
    with ``max(16, round(G * L * L * hidden_ratio))`` hidden units and biases."""
    bands = num_groups * spectrum_length**2
    hidden = max(16, round(bands * hidden_ratio))
    layer_norm = 2 * bands if descriptor_norm else 0
    return layer_norm + (bands * hidden + hidden) + (hidden * bands + bands)


def check_dswg_parameter_count(function: Callable) -> bool:
    """``function(spectrum_length, num_groups, hidden_ratio, descriptor_norm)`` must return the
    number of parameters of ``DynamicSpectrumWeights`` with those settings."""

    def cases() -> str:
        settings = [(4, 4, 0.5, True), (4, 2, 0.5, True), (8, 4, 0.25, True), (3, 4, 0.5, False),
                    (1, 1, 0.5, True), (2, 1, 0.5, True)]
        for length, groups, ratio, norm in settings:
            case = (f"L = {length}, G = {groups}, hidden_ratio = {ratio}, descriptor_norm = "
                    f"{norm}")
            counts = {sum(p.numel() for p in DynamicSpectrumWeights(
                dim, length, num_groups=groups, hidden_ratio=ratio,
                descriptor_norm=norm).parameters()) for dim in (4 * groups, 64 * groups)}
            assert len(counts) == 1, counts  # the size does not depend on the channels
            expected = counts.pop()
            got = call(function, case, length, groups, hidden_ratio=ratio, descriptor_norm=norm)
            bands = groups * length**2
            hidden = max(16, round(bands * ratio))
            hint = ("LayerNorm: gamma and beta per descriptor (if descriptor_norm); fc1: "
                    "bands x hidden weights and hidden biases; fc2: hidden x bands weights and "
                    "bands biases; bands = G * L * L.")
            if got != expected:
                if got == expected - 2 * bands or got == expected + 2 * bands:
                    hint = ("Off by 2 * G * L * L: the LayerNorm has a gamma and a beta per "
                            "descriptor, and is there only if descriptor_norm is True.")
                elif got == expected - hidden - bands:
                    hint = "Both Linear layers have biases (hidden and G * L * L of them)."
                elif bands * ratio < 16:
                    hint = ("The hidden width never drops below 16: hidden = "
                            "max(16, round(G * L * L * hidden_ratio)).")
            expect_equal(got, expected, case, hint)
        return ("Your formula matches the module for 6 settings; the count depends on G, L and "
                "the hidden ratio, never on the channels C or the resolution.")

    return run_check("dswg_parameter_count", function, cases)
