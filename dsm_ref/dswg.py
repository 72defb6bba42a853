"""The Dynamic Spectrum Weights Generator (DSWG): a content-adaptive spectrum-band selector.

Defined in notebook 03. What the paper states (abstract and summary): a dynamic spectrum weight
generation layer emphasises informative frequency bands and diminishes others; it downsamples the
frequency features and computes a weight per band with a two-layer MLP; the "spectrum length"
can be small. Everything else below is our documented choice (DESIGN.md section 2):

1. band descriptor: the log of each of ``num_groups`` channel groups' root-mean-square magnitude,
   ``log(1 + sqrt(mean over the group's channels of |S|^2))`` per coefficient (or ``log(1 + |S|)``
   per channel averaged over the group, ``log(1 + |S|)`` of the group's mean, or ``|S|`` over its
   per-image mean), then pooled (mean or max) over each of an ``L x L`` grid of rectangular bands
   -> ``(B, G, L, L)``;
2. a LayerNorm over all ``G * L * L`` band descriptors of the image, then a two-layer MLP ->
   band logits ``(B, G, L*L)``; its first layer starts at unit output scale, its last at zero;
3. a gate with mean 1: ``L*L * softmax`` over the bands of a group (default), ``2 * sigmoid``,
   or plain ``sigmoid`` (mean 0.5, kept for the ablation);
4. the band weights are expanded (nearest: a band shares its weight) to ``(B, H, W, C)``.

At initialisation every gate but ``sigmoid`` outputs exactly 1, so a dynamic mixer starts equal
to its static twin and an ablation starts both arms from the same function.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import cached_constant
from .checks import check_choice
from .dct import _compute_dtype, full_precision
from .spectrum import block_band_index

__all__ = ["DynamicSpectrumWeights", "BandLayout", "GATES", "POOLS", "DESCRIPTORS", "LAYOUTS",
           "SPECTRUM_LENGTH", "can_overwrite"]

# Bands per axis by default, for the DSWG and every mixer that builds one (the one place it is
# written): see ``spectrum_length`` in :class:`DynamicSpectrumWeights`.
SPECTRUM_LENGTH = 4

GATES = ("softmax", "2sigmoid", "sigmoid")
POOLS = ("mean", "max")
DESCRIPTORS = ("log", "log_of_mean", "log_rms", "normalized")
LAYOUTS = ("dct", "rfft")
HIDDEN_INITS = ("small", "lecun")


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


class BandLayout(NamedTuple):
    """Where the ``L x L`` bands of an ``(H, W)`` spectrum lie (constants of the forward pass)."""

    row_onehot: Tensor  # (H, L) float32: band membership of each row
    col_onehot: Tensor  # (W, L) float32: band membership of each column
    counts: Tensor  # (L, L) float32: coefficients per band, 0 for an empty band
    band_of: Tensor  # (H * W,) long: band id ``row_band * L + col_band`` of each coefficient
    band_mean: Tensor  # (L * L, H * W) float64: row ``k`` averages the coefficients of band ``k``
    occupied: Tensor  # (L * L,) bool: bands that hold at least one coefficient


def _build_layout(h: int, w: int, length: int, folded_rows: bool, device) -> BandLayout:
    rows = band_index(h, length, folded=folded_rows, device=device)
    cols = band_index(w, length, folded=False, device=device)
    row_onehot = F.one_hot(rows, length).float()
    col_onehot = F.one_hot(cols, length).float()
    counts = torch.outer(row_onehot.sum(0), col_onehot.sum(0))
    band_of = (rows[:, None] * length + cols[None, :]).flatten()
    members = F.one_hot(band_of, length * length).double().T  # (L*L, H*W)
    return BandLayout(
        row_onehot=row_onehot,
        col_onehot=col_onehot,
        counts=counts,
        band_of=band_of,
        band_mean=members / counts.double().flatten().clamp_min(1.0)[:, None],
        occupied=counts.flatten() > 0,
    )


class _GroupLogMagnitude(torch.autograd.Function):
    """``mean over each group's channels of log(1 + |S|)``: ``(B, H, W, C) -> (B, H, W, G)``.

    The same numbers as ``torch.log1p(S.abs()).reshape(B, H, W, G, C // G).mean(-1)``, with one
    full-size temporary instead of two, and nothing full-size saved for the backward but ``S``
    itself (which the mixer's ``S * W0`` keeps anyway): a logarithm of every coefficient is this
    descriptor's largest cost on CPU, and each pass over the full spectrum counts
    (BENCHMARKS.md). Real spectra only. Kept exact (``log1p_``, not the faster ``log_`` of
    ``add_(1)``, which changes the last bit) so that the studies and weights trained with it
    still reproduce.
    """

    @staticmethod
    def forward(ctx, spectrum: Tensor, groups: int) -> Tensor:
        b, h, w, c = spectrum.shape
        magnitude = spectrum.abs()
        magnitude = magnitude.to(_compute_dtype(magnitude.dtype))  # statistics in float32
        ctx.save_for_backward(spectrum)
        ctx.groups = groups
        return magnitude.log1p_().reshape(b, h, w, groups, c // groups).mean(-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (spectrum,) = ctx.saved_tensors
        b, h, w, c = spectrum.shape
        per_channel = grad.to(spectrum.dtype)[..., None] / (c // ctx.groups)  # (B, H, W, G, 1)
        # d/dS log(1 + |S|) = sign(S) / (1 + |S|)
        slope = torch.sign(spectrum).div_(spectrum.abs().add_(1.0))
        slope.view(b, h, w, ctx.groups, c // ctx.groups).mul_(per_channel)  # in place: same bits
        return slope, None


def _eager() -> bool:
    """Not traced, compiled or exported: there the plain ops are kept (and fused by the
    compiler)."""
    return not torch.jit.is_tracing() and not torch.compiler.is_compiling()


def _eager_real(tensor: Tensor) -> bool:
    """Whether the hand-written backwards below may run on ``tensor``: a real float32/float64
    tensor in eager mode."""
    return tensor.dtype in (torch.float32, torch.float64) and _eager()


def can_overwrite(*tensors: Tensor) -> bool:
    """Whether a product of ``tensors`` may be written into the first of them: it has the
    product's shape and dtype, the mode is eager, and no gradient is recorded through any of
    them (inference, ``torch.no_grad``, frozen weights).
    The caller must own the first tensor (e.g. a transform's fresh output).

    Why: at inference a mixer's spectrum is needed by nothing after its product, and on CPU
    writing into it is faster than a fresh full-size tensor, whose pages fault on first touch
    (``BENCHMARKS.md``, notebook 07). Real products are the same bits either way; a complex
    product can differ in the last bit, as its rounding follows the memory order."""
    first = tensors[0]
    recorded = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    fits = all(  # broadcasts into the first's shape and dtype (torch.broadcast_shapes: ~30 us)
        t.ndim <= first.ndim
        and all(n in (1, m) for n, m in zip(t.shape, first.shape[first.ndim - t.ndim:],
                                            strict=True))
        and torch.promote_types(first.dtype, t.dtype) == first.dtype for t in tensors[1:])
    return fits and not recorded and _eager()


class _FilterAndGroupNorm(torch.autograd.Function):
    """``(S * W0, ||S|| over each group's channels)``: ``(B, H, W, C), (..., C) -> (B, H, W, C),
    (B, H, W, G)``, the static filter and the ``log_rms`` descriptor's norm from one node.

    The same numbers as ``spectrum * weight`` and ``torch.linalg.vector_norm`` of the grouped
    spectrum, and the same gradients within float rounding, with fewer passes over the full
    spectrum in the backward: the spectrum's gradient from both outputs is one product and one
    in-place ``addcmul_`` (autograd would divide, mask, multiply and then add the two
    gradients: four full-size passes and three full-size temporaries). Gradient 0, not NaN,
    where a whole group is 0. Real float32/float64 spectra only (the training path of
    :meth:`DynamicSpectrumWeights.forward`).
    """

    @staticmethod
    def forward(ctx, spectrum: Tensor, weight: Tensor, groups: int) -> tuple[Tensor, Tensor]:
        b, h, w, c = spectrum.shape
        norms = torch.linalg.vector_norm(spectrum.reshape(b, h, w, groups, c // groups), dim=-1)
        ctx.save_for_backward(spectrum, weight, norms)
        ctx.groups = groups
        return spectrum * weight, norms

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_filtered: Tensor, grad_norms: Tensor | None
                 ) -> tuple[Tensor | None, Tensor | None, None]:
        spectrum, weight, norms = ctx.saved_tensors
        b, h, w, c = spectrum.shape
        grad_spectrum = grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad_filtered * spectrum).sum_to_size(weight.shape)
        if ctx.needs_input_grad[0]:
            grad_spectrum = (grad_filtered * weight).contiguous()  # no copy when it already is
            if grad_norms is not None:  # d||s|| / ds = s / ||s||, 0 for an all-zero group
                slope = torch.where(norms > 0, grad_norms / norms, 0.0)
                grad_spectrum.view(b, h, w, ctx.groups, c // ctx.groups).addcmul_(
                    spectrum.reshape(b, h, w, ctx.groups, c // ctx.groups), slope[..., None])
        return grad_spectrum, grad_weight, None


class _GroupWeighting(torch.autograd.Function):
    """``values * per_group``: ``(..., K) * (..., 1) -> (..., K)``, each group's ``K`` channels
    times its weight. Autograd's backward of the broadcast product builds ``grad * values`` at full
    size and then sums it; this one takes the weight's gradient as ``N`` dot products in one
    ``bmm``, with no full-size temporary."""

    @staticmethod
    def forward(ctx, values: Tensor, per_group: Tensor) -> Tensor:
        ctx.save_for_backward(values, per_group)
        return values * per_group

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        values, per_group = ctx.saved_tensors
        grad_values = grad * per_group if ctx.needs_input_grad[0] else None
        grad_weights = None
        if ctx.needs_input_grad[1]:
            k = values.shape[-1]
            grad_weights = torch.bmm(grad.reshape(-1, 1, k), values.reshape(-1, k, 1))
            grad_weights = grad_weights.view(per_group.shape)
        return grad_values, grad_weights


class DynamicSpectrumWeights(nn.Module):
    """Per-image band weights from a spectrum ``(B, H, W, C)``, applied to the spectrum's values.

    ``band_weights(S)``: ``(B, G, L, L)``, the selector's decision; ``weights(S)``: ``A(S)``
    ``(B, H, W, C)``, each coefficient's weight; calling the module, ``dswg(S, values)``,
    returns ``values * A(S)``, which is what the mixers do.

    Args:
        dim: channels ``C`` of the spectrum.
        spectrum_length: ``L``, bands per axis (``L * L`` bands). paper: "spectrum length", can be
            small / ours: rectangular blocks of coefficients, default 4 / why: cheap, keeps the
            low-to-high ordering on both axes, and the MLP size does not depend on resolution.
        num_groups: channel groups ``G`` with their own band weights (``dim % G == 0``).
            paper: not stated / ours: 4 / why: different channels can select different bands at
            ``G * L * L`` weights per image.
        hidden_ratio: MLP hidden width as a fraction of its input ``G * L * L``, at least 16.
            paper: "a two-layer MLP", width not stated / ours: 0.5, floor 16 / why: a
            bottleneck like SE's keeps the DSWG's cost small next to the mixer's (64 bands ->
            32 hidden at the defaults); the floor keeps small settings (``L = 1``, one group:
            1 band) from a hidden layer of 1 unit, which could not tell images apart.
        gate: ``"softmax"`` (``L*L * softmax``, mean 1), ``"2sigmoid"`` (1 at init) or
            ``"sigmoid"`` (0.5 at init). paper: not stated / ours: softmax / why: a prototype saw
            a plain sigmoid halve the branch at start and then saturate.
        pool: how a band's descriptors are pooled, ``"mean"`` or ``"max"``.
        descriptor: ``"log_rms"`` (``log(1 + RMS)``, the RMS of ``S`` over the group's
            channels at each coefficient), ``"log"`` (``log(1 + |S|)`` per channel, then the
            group mean), ``"log_of_mean"`` (``log(1 + group mean of |S|)``) or ``"normalized"``
            (``|S|`` over its per-image, per-group mean). All stay bounded as the resolution and
            the DC term grow. paper: "downsamples the frequency features" / ours: ``"log_rms"``
            / why: one fused pass over the spectrum (``torch.linalg.vector_norm``: no full-size
            temporary) and one logarithm per group instead of one per channel, the DSWG's
            largest cost on CPU (``BENCHMARKS.md``); on the ``distractors`` task no difference
            from ``"log"``, the default before it, is shown (5 seeds: -0.19 points, 95 % CI
            [-1.18, +0.80]; both beat the static twin by +4.7 to +4.9;
            ``data/results/cpu-distractors``, notebook 06). The studies and weights stored
            before the change ran ``"log"`` (notebooks 05 and 06 say which).
        layout: ``"dct"`` (coefficient ``(ky, kx)`` is frequency ``(ky, kx)``) or ``"rfft"`` (an
            ``rfft2`` half-spectrum: rows are folded to ``|frequency|``).
        descriptor_norm: LayerNorm over the ``G * L * L`` band descriptors of each image before
            the MLP. paper: not stated / ours: on / why: the raw descriptors share a large
            per-image offset (every band's descriptor is positive and similar), so the MLP
            saw mostly the image's overall energy; normalised, it sees which bands stand out.
            Its cost: the overall spectral level is gone, and a task that needs it (notebook
            03's denoising example) does worse with it; ``descriptor_norm=False`` keeps it.
        hidden_init: ``"lecun"`` (first layer ``N(0, 1 / fan_in)``, so its output has unit
            scale) or ``"small"`` (``N(0, 0.02^2)`` like every other linear layer).
            paper: not stated / ours: ``"lecun"`` / why: with the last layer at zero and the
            first at 0.02, both layers of the MLP start near zero and the gradient reaching
            either is tiny (a saddle): the DSWG moves late, and after training its first-stage
            band weights still barely varied over images (spread 0.05 against 0.84 with both
            new choices; ``dsm_ref.probe``). On the ``distractors`` spectral task (5 seeds,
            12 epochs) the first form gained +0.73 points over its static twin, the new form
            +5.26 (``data/results/cpu-distractors``, notebook 06).
    """

    def __init__(
        self,
        dim: int,
        spectrum_length: int = SPECTRUM_LENGTH,
        *,
        num_groups: int = 4,
        hidden_ratio: float = 0.5,
        gate: str = "softmax",
        pool: str = "mean",
        descriptor: str = "log_rms",
        layout: str = "dct",
        descriptor_norm: bool = True,
        hidden_init: str = "lecun",
    ) -> None:
        super().__init__()
        if spectrum_length < 1:
            raise ValueError(f"spectrum_length must be >= 1, got {spectrum_length}")
        if num_groups < 1 or dim % num_groups:
            raise ValueError(f"num_groups={num_groups} must divide dim={dim}")
        self.dim = dim
        self.spectrum_length = spectrum_length
        self.num_groups = num_groups
        self.gate = check_choice("gate", gate, GATES)
        self.pool = check_choice("pool", pool, POOLS)
        self.descriptor = check_choice("descriptor", descriptor, DESCRIPTORS)
        self.layout = check_choice("layout", layout, LAYOUTS)
        self.hidden_init = check_choice("hidden_init", hidden_init, HIDDEN_INITS)
        num_bands = num_groups * spectrum_length**2
        hidden = max(16, round(num_bands * hidden_ratio))
        self.norm = nn.LayerNorm(num_bands) if descriptor_norm else nn.Identity()
        self.fc1 = nn.Linear(num_bands, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, num_bands)
        self.init_weights()

    def init_weights(self) -> None:
        """Zero last layer: all band logits are 0 at start, so the gate outputs its mean.
        ``hidden_init="lecun"`` also draws the first layer with std ``1 / sqrt(fan_in)``."""
        if self.hidden_init == "lecun":
            nn.init.trunc_normal_(self.fc1.weight, std=self.fc1.in_features ** -0.5)
            nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def band_layout(self, h: int, w: int, device: torch.device) -> BandLayout:
        """Where the ``L x L`` bands of an ``(H, W)`` spectrum lie; cached per size and device."""
        length, folded_rows = self.spectrum_length, self.layout == "rfft"
        key = ("dswg_bands", h, w, length, folded_rows, torch.device(device))
        return cached_constant(key, lambda: _build_layout(h, w, length, folded_rows, device))

    def _band_mean(self, h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The layout's ``band_mean`` in ``dtype``, cached: at 224 x 224 it has 0.8 M entries,
        too many to convert on every forward."""
        length, folded_rows = self.spectrum_length, self.layout == "rfft"
        key = ("dswg_band_mean", h, w, length, folded_rows, dtype, torch.device(device))
        return cached_constant(key, lambda: self.band_layout(h, w, device).band_mean.to(dtype))

    def band_descriptors(self, spectrum: Tensor, *, group_norms: Tensor | None = None) -> Tensor:
        """Band descriptors ``(B, G, L, L)`` of a real or complex spectrum ``(B, H, W, C)``.

        A band with no coefficient (``H < L`` or ``W < L``) gets the descriptor 0.
        ``group_norms``: the ``log_rms`` descriptor's norms of each group's channels, ``(B, H,
        W, G)``, when the caller already has them (:meth:`forward` in training).
        """
        b, h, w, c = spectrum.shape
        groups = self.num_groups
        if self.descriptor == "log" and not spectrum.is_complex():
            features = _GroupLogMagnitude.apply(spectrum, groups)
        elif self.descriptor == "log_rms":  # one fused pass over S: no full-size temporary
            if group_norms is None:
                grouped = spectrum.reshape(b, h, w, groups, c // groups)
                statistics = _compute_dtype(spectrum.dtype)  # float32 for half inputs
                group_norms = torch.linalg.vector_norm(
                    grouped, dim=-1, dtype=None if statistics == spectrum.dtype else statistics)
            features = torch.log1p(group_norms * (groups / c) ** 0.5)  # small: (B, H, W, G)
        else:
            magnitude = spectrum.abs()
            magnitude = magnitude.to(_compute_dtype(magnitude.dtype))  # statistics in float32
            grouped = magnitude.reshape(b, h, w, groups, c // groups)
            if self.descriptor == "log":
                features = torch.log1p(grouped).mean(-1)
            elif self.descriptor == "log_of_mean":  # one log per group, not one per channel
                features = torch.log1p(grouped.mean(-1))
            else:
                features = magnitude / magnitude.mean(dim=(1, 2), keepdim=True).clamp_min(1e-6)
                features = features.reshape(b, h, w, groups, c // groups).mean(-1)
        if self.pool == "mean":  # one matmul: (L*L, H*W) @ (B, H*W, G) -> (B, L*L, G)
            band_mean = self._band_mean(h, w, features.dtype, spectrum.device)
            pooled = band_mean @ features.reshape(b, h * w, groups)
            length = self.spectrum_length
            return pooled.transpose(1, 2).reshape(b, groups, length, length)
        layout = self.band_layout(h, w, spectrum.device)
        row_onehot = layout.row_onehot.to(features.dtype)
        col_onehot = layout.col_onehot.to(features.dtype)
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

    def band_weights(self, spectrum: Tensor, *, group_norms: Tensor | None = None) -> Tensor:
        """Gated weight of each band, ``(B, G, L, L)``: the selector's decision per image.

        The softmax gate spreads a mean of 1 over the bands that hold coefficients; an empty
        band (input smaller than ``L`` on an axis) gets weight 0 and is never used.
        ``group_norms``: see :meth:`band_descriptors`.
        """
        b, h, w, _ = spectrum.shape
        with full_precision(spectrum.device.type):  # under autocast too: a gate of mean 1
            descriptors = self.band_descriptors(spectrum, group_norms=group_norms)
            descriptors = descriptors.to(self.fc1.weight.dtype)
            logits = self.fc2(self.act(self.fc1(self.norm(descriptors.reshape(b, -1)))))
            return self._gate(logits, h, w, spectrum.device)

    def _gate(self, logits: Tensor, h: int, w: int, device: torch.device) -> Tensor:
        """Band logits ``(B, G * L * L)`` -> gated band weights ``(B, G, L, L)``."""
        b = logits.shape[0]
        logits = logits.reshape(b, self.num_groups, -1)
        if self.gate == "softmax":
            occupied = self.band_layout(h, w, device).occupied
            logits = logits.masked_fill(~occupied, float("-inf"))
            weights = occupied.sum() * torch.softmax(logits, dim=-1)
        elif self.gate == "2sigmoid":
            weights = 2.0 * torch.sigmoid(logits)
        else:
            weights = torch.sigmoid(logits)
        length = self.spectrum_length
        return weights.reshape(b, self.num_groups, length, length)

    def _per_group(self, band_weights: Tensor, h: int, w: int) -> Tensor:
        """``(B, G, L, L) -> (B, H, W, G, 1)``: each coefficient's weight, once per group."""
        b, g = band_weights.shape[:2]
        band_of = self.band_layout(h, w, band_weights.device).band_of
        per_band = band_weights.reshape(b, g, -1).transpose(1, 2)  # (B, L*L, G)
        return per_band.index_select(1, band_of).reshape(b, h, w, g, 1)  # a gather

    def expand(self, band_weights: Tensor, h: int, w: int) -> Tensor:
        """``(B, G, L, L) -> (B, H, W, C)``: each coefficient takes its band's weight."""
        b, g = band_weights.shape[:2]
        per_group = self._per_group(band_weights, h, w)
        return per_group.expand(b, h, w, g, self.dim // g).reshape(b, h, w, self.dim)

    def weights(self, spectrum: Tensor) -> Tensor:
        """The weights ``A(S)``, ``(B, H, W, C)``: each coefficient's band weight."""
        h, w = spectrum.shape[1:3]
        return self.expand(self.band_weights(spectrum), h, w).to(spectrum.real.dtype)

    def forward(self, spectrum: Tensor, values: Tensor | None = None, *,
                static_weight: Tensor | None = None, inplace: bool = False) -> Tensor:
        """``values * A(S)``: re-weights ``values`` ``(B, H, W, C)`` (the mixer's filtered
        spectrum ``S * W0``, real or complex) by the band weights of ``spectrum`` ``(B, H, W,
        C)``. Equal to ``values * self.weights(spectrum)`` but without building ``A(S)`` at
        full size: the weights broadcast over each group's channels (one multiply instead of
        an expand, a copy and a multiply).

        ``static_weight`` instead of ``values``: ``S * static_weight * A(S)``, the DSM mixer's
        whole spectral product (``static_weight`` broadcasts against ``S``, e.g. ``W0`` ``(H,
        W, C)``). While gradients are recorded on a real float32/float64 spectrum with the
        ``log_rms`` descriptor, the static product, the descriptor's norms and the band
        weighting run as two autograd nodes with hand-written backwards
        (:class:`_FilterAndGroupNorm`, :class:`_GroupWeighting`): the same values, gradients
        equal within float rounding, fewer full-size passes in the backward. Tracing,
        compiling and exporting take the plain path.

        ``inplace=True`` lets it overwrite the tensor it multiplies, ``values`` or, with
        ``static_weight``, ``spectrum`` (whose band weights are then taken first), when no
        gradient is recorded through the multiply (inference, ``torch.no_grad``; see
        :func:`can_overwrite`): no full-size output is allocated, and a real result is the same
        bits. With gradients it multiplies out of place, as the backward needs the inputs.
        A forward hook reading ``spectrum`` after the call then sees the product: read it in a
        forward pre-hook (as :mod:`dsm_ref.probe` does).
        """
        b, h, w, c = spectrum.shape
        groups = self.num_groups
        if (values is None) == (static_weight is None):
            raise ValueError("give either values (to re-weight) or static_weight (to multiply "
                             "the spectrum by, then re-weight), not both and not neither")
        norms = None  # the log_rms descriptor's group norms, when the training path made them
        band_weights = None
        if static_weight is not None:
            if inplace and can_overwrite(spectrum, static_weight):
                band_weights = self.band_weights(spectrum)  # read S before it is overwritten
                values = spectrum.mul_(static_weight)
            elif (self.descriptor == "log_rms" and torch.is_grad_enabled()
                  and _eager_real(spectrum)):
                values, norms = _FilterAndGroupNorm.apply(spectrum, static_weight, groups)
            else:
                values, inplace = spectrum * static_weight, True  # new: ours to overwrite
        elif values.shape != spectrum.shape:
            raise ValueError(
                f"values must have the spectrum's shape {tuple(spectrum.shape)}, "
                f"got {tuple(values.shape)}"
            )
        if band_weights is None:
            band_weights = self.band_weights(spectrum, group_norms=norms)
        per_group = self._per_group(band_weights, h, w).to(spectrum.real.dtype)
        grouped = values.reshape(b, h, w, groups, c // groups)
        recorded = torch.is_grad_enabled() and (values.requires_grad or per_group.requires_grad)
        if inplace and not recorded:
            return grouped.mul_(per_group).reshape(b, h, w, c)
        if recorded and _eager_real(values):
            return _GroupWeighting.apply(grouped, per_group).reshape(b, h, w, c)
        return (grouped * per_group).reshape(b, h, w, c)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, spectrum_length={self.spectrum_length}, "
            f"num_groups={self.num_groups}, gate={self.gate!r}, pool={self.pool!r}, "
            f"descriptor={self.descriptor!r}, layout={self.layout!r}, "
            f"descriptor_norm={not isinstance(self.norm, nn.Identity)}, "
            f"hidden_init={self.hidden_init!r}"
        )
