"""The Dynamic Spectrum Weights Generator (DSWG): a content-adaptive spectrum-band selector.

Defined in notebook 03. What the paper states (abstract and summary): a dynamic spectrum weight
generation layer emphasises informative frequency bands and diminishes others; it downsamples the
frequency features and computes a weight per band with a two-layer MLP; the "spectrum length"
can be small. Everything else below is our documented choice (DESIGN.md section 2):

1. band descriptor: ``log(1 + |S|)`` (or ``|S|`` over its per-image mean) per channel, averaged over
   the channels of each of ``num_groups`` groups, then pooled (mean or max) over each of an
   ``L x L`` grid of rectangular bands -> ``(B, G, L, L)``;
2. a two-layer MLP over all ``G * L * L`` band descriptors -> band logits ``(B, G, L*L)``; its
   last layer starts at zero;
3. a gate with mean 1: ``L*L * softmax`` over the bands of a group (default), ``2 * sigmoid``,
   or plain ``sigmoid`` (mean 0.5, kept for the ablation);
4. the band weights are expanded (nearest: a band shares its weight) to ``(B, H, W, C)``.

At initialisation every gate but ``sigmoid`` outputs exactly 1, so a dynamic mixer starts equal
to its static twin and an ablation starts both arms from the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .spectrum import block_band_index

__all__ = ["DynamicSpectrumWeights", "GATES", "POOLS", "DESCRIPTORS", "LAYOUTS"]

GATES = ("softmax", "2sigmoid", "sigmoid")
POOLS = ("mean", "max")
DESCRIPTORS = ("log", "normalized")
LAYOUTS = ("dct", "rfft")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def band_index(n: int, length: int, *, folded: bool, device: torch.device) -> Tensor:
    """Band of each of ``n`` frequency indices along one axis, ``(n,)`` long in ``[0, length)``.

    ``folded=False``: index ``k`` is frequency ``k`` (DCT axes, the rfft half axis).
    ``folded=True``: index ``k`` of a full FFT axis is frequency ``min(k, n - k)``, so positive
    and negative frequencies share a band.
    """
    if not folded:
        return block_band_index(n, length, device=device)
    k = torch.arange(n, device=device)
    frequency = torch.minimum(k, n - k)
    return frequency * length // (n // 2 + 1)


class DynamicSpectrumWeights(nn.Module):
    """Per-image band weights from a spectrum: ``(B, H, W, C) -> (B, H, W, C)``.

    Args:
        dim: channels ``C`` of the spectrum.
        spectrum_length: ``L``, bands per axis (``L * L`` bands). paper: "spectrum length", can be
            small / ours: rectangular blocks of coefficients, default 4 / why: cheap, keeps the
            low-to-high ordering on both axes, and the MLP size does not depend on resolution.
        num_groups: channel groups ``G`` with their own band weights (``dim % G == 0``).
            paper: not stated / ours: 4 / why: different channels can select different bands at
            ``G * L * L`` weights per image.
        hidden_ratio: MLP hidden width as a fraction of its input ``G * L * L`` (at least 16).
        gate: ``"softmax"`` (``L*L * softmax``, mean 1), ``"2sigmoid"`` (1 at init) or
            ``"sigmoid"`` (0.5 at init). paper: not stated / ours: softmax / why: a prototype saw
            a plain sigmoid halve the branch at start and then saturate.
        pool: how a band's descriptors are pooled, ``"mean"`` or ``"max"``.
        descriptor: ``"log"`` (``log(1 + |S|)``) or ``"normalized"`` (``|S|`` over its per-image,
            per-group mean). Both stay bounded as the resolution and the DC term grow.
        layout: ``"dct"`` (coefficient ``(ky, kx)`` is frequency ``(ky, kx)``) or ``"rfft"`` (an
            ``rfft2`` half-spectrum: rows are folded to ``|frequency|``).
    """

    def __init__(
        self,
        dim: int,
        spectrum_length: int = 4,
        *,
        num_groups: int = 4,
        hidden_ratio: float = 0.5,
        gate: str = "softmax",
        pool: str = "mean",
        descriptor: str = "log",
        layout: str = "dct",
    ) -> None:
        super().__init__()
        if spectrum_length < 1:
            raise ValueError(f"spectrum_length must be >= 1, got {spectrum_length}")
        if num_groups < 1 or dim % num_groups:
            raise ValueError(f"num_groups={num_groups} must divide dim={dim}")
        self.dim = dim
        self.spectrum_length = spectrum_length
        self.num_groups = num_groups
        self.gate = _choice("gate", gate, GATES)
        self.pool = _choice("pool", pool, POOLS)
        self.descriptor = _choice("descriptor", descriptor, DESCRIPTORS)
        self.layout = _choice("layout", layout, LAYOUTS)
        num_bands = num_groups * spectrum_length**2
        hidden = max(16, round(num_bands * hidden_ratio))
        self.fc1 = nn.Linear(num_bands, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, num_bands)
        self.init_weights()

    def init_weights(self) -> None:
        """Zero last layer: all band logits are 0 at start, so the gate outputs its mean."""
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def _band_indices(self, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
        length = self.spectrum_length
        folded_rows = self.layout == "rfft"
        return (
            band_index(h, length, folded=folded_rows, device=device),
            band_index(w, length, folded=False, device=device),
        )

    def _pooling_matrices(self, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """One-hot band membership of each row ``(H, L)`` and column ``(W, L)``."""
        rows, cols = self._band_indices(h, w, device)
        length = self.spectrum_length
        return F.one_hot(rows, length).float(), F.one_hot(cols, length).float()

    def band_descriptors(self, spectrum: Tensor) -> Tensor:
        """Band descriptors ``(B, G, L, L)`` of a real or complex spectrum ``(B, H, W, C)``.

        A band with no coefficient (``H < L`` or ``W < L``) gets the descriptor 0.
        """
        b, h, w, c = spectrum.shape
        magnitude = spectrum.abs()
        if magnitude.dtype in (torch.float16, torch.bfloat16):  # statistics in float32
            magnitude = magnitude.float()
        if self.descriptor == "log":
            features = torch.log1p(magnitude)
        else:
            features = magnitude / magnitude.mean(dim=(1, 2), keepdim=True).clamp_min(1e-6)
        features = features.reshape(b, h, w, self.num_groups, c // self.num_groups).mean(-1)
        row_onehot, col_onehot = self._pooling_matrices(h, w, spectrum.device)
        row_onehot, col_onehot = row_onehot.to(features.dtype), col_onehot.to(features.dtype)
        if self.pool == "mean":
            summed = torch.einsum("bhwg,hl,wm->bglm", features, row_onehot, col_onehot)
            counts = torch.outer(row_onehot.sum(0), col_onehot.sum(0))  # (L, L); 0 = empty band
            return summed / counts.clamp_min(1.0)
        # Max over each band: mask the other rows/cols with -inf, reduce, and zero empty bands.
        neg_inf = torch.finfo(features.dtype).min
        per_row = torch.where(
            row_onehot.T[None, :, :, None, None] > 0, features[:, None], neg_inf
        ).amax(2)  # (B, L, W, G)
        pooled = torch.where(
            col_onehot.T[None, None, :, :, None] > 0, per_row[:, :, None], neg_inf
        ).amax(3)  # (B, L, L, G)
        pooled = torch.where(pooled > neg_inf, pooled, torch.zeros_like(pooled))
        return pooled.permute(0, 3, 1, 2)

    def band_weights(self, spectrum: Tensor) -> Tensor:
        """Gated weight of each band, ``(B, G, L, L)``: the selector's decision per image.

        The softmax gate spreads a mean of 1 over the bands that hold coefficients; an empty
        band (input smaller than ``L`` on an axis) gets weight 0 and is never used.
        """
        b, h, w, _ = spectrum.shape
        descriptors = self.band_descriptors(spectrum).to(self.fc1.weight.dtype)
        logits = self.fc2(self.act(self.fc1(descriptors.reshape(b, -1))))
        logits = logits.reshape(b, self.num_groups, -1)
        if self.gate == "softmax":
            row_onehot, col_onehot = self._pooling_matrices(h, w, spectrum.device)
            occupied = torch.outer(row_onehot.sum(0), col_onehot.sum(0)).flatten() > 0
            logits = logits.masked_fill(~occupied, float("-inf"))
            weights = occupied.sum() * torch.softmax(logits, dim=-1)
        elif self.gate == "2sigmoid":
            weights = 2.0 * torch.sigmoid(logits)
        else:
            weights = torch.sigmoid(logits)
        length = self.spectrum_length
        return weights.reshape(b, self.num_groups, length, length)

    def expand(self, band_weights: Tensor, h: int, w: int) -> Tensor:
        """``(B, G, L, L) -> (B, H, W, C)``: each coefficient takes its band's weight."""
        rows, cols = self._band_indices(h, w, band_weights.device)
        per_coefficient = band_weights[:, :, rows][:, :, :, cols]  # (B, G, H, W)
        per_coefficient = per_coefficient.permute(0, 2, 3, 1)
        return per_coefficient.repeat_interleave(self.dim // self.num_groups, dim=-1)

    def forward(self, spectrum: Tensor) -> Tensor:
        _, h, w, _ = spectrum.shape
        return self.expand(self.band_weights(spectrum), h, w).to(spectrum.real.dtype)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, spectrum_length={self.spectrum_length}, "
            f"num_groups={self.num_groups}, gate={self.gate!r}, pool={self.pool!r}, "
            f"descriptor={self.descriptor!r}, layout={self.layout!r}"
        )
