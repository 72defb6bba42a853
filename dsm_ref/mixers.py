"""Token mixers with one call signature, so a block can swap them (timm's MetaFormer pattern).

Every mixer is built as ``Mixer(dim, input_size, **options)`` and maps channels-last tokens
``(B, H, W, C) -> (B, H, W, C)``. ``input_size`` is the ``(H, W)`` the mixer is built for; the
spectral ones resize their weights when a different size comes in (train at 224, run at 288 or
320x256), and load state dicts saved at another size.

Defined in notebook 04.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_choice
from .dct import dct2, idct2
from .dswg import SPECTRUM_LENGTH, DynamicSpectrumWeights, can_overwrite

__all__ = [
    "DynamicSpectrumMixer",
    "GlobalFilter",
    "DynamicFilter",
    "Attention",
    "DepthwiseConvMixer",
    "IdentityMixer",
    "STATIC_INITS",
    "resize_spectral_weight",
]

STATIC_INITS = ("random", "ones")


def resize_spectral_weight(weight: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of a spectral weight ``(H0, W0, ...) -> (H, W, ...)``.

    Used every forward where the input size differs from the build size and when a state dict of
    another size is loaded. Traceable: no Python branching on tensor values.
    """
    symbolic = any(isinstance(s, torch.SymInt) for s in size)  # an export with dynamic sizes
    if not symbolic and tuple(weight.shape[:2]) == tuple(size):
        return weight
    trailing = weight.shape[2:]
    grid = weight.reshape(weight.shape[0], weight.shape[1], -1).permute(2, 0, 1)[None]
    resized = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
    return resized[0].permute(1, 2, 0).reshape(*size, *trailing)


def _filter(spectrum: Tensor, weight: Tensor, overwrite: bool) -> Tensor:
    """``spectrum * weight``, written into ``spectrum`` (a transform's new output, needed by
    nothing after this product) when ``overwrite`` and no gradient is recorded: at inference on
    CPU that is faster than a new full-size tensor, with the same bits for a real product and
    within float rounding for a complex one (:func:`~dsm_ref.dswg.can_overwrite`)."""
    if overwrite and can_overwrite(spectrum, weight):
        return spectrum.mul_(weight)
    return spectrum * weight


def _check_tokens(x: Tensor, dim: int, name: str) -> None:
    if x.ndim != 4 or x.shape[-1] != dim:
        raise ValueError(
            f"{name} expects channels-last tokens (B, H, W, C={dim}), got shape {tuple(x.shape)}"
        )


class _SpectralWeightResizing(nn.Module):
    """Mixin for mixers with a ``spectral_weight`` built for ``input_size``.

    A state dict saved at another size is resized on load, so checkpoints move across resolutions.
    """

    spectral_weight: nn.Parameter

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "spectral_weight"
        if key in state_dict:
            stored = state_dict[key]
            if stored.shape[2:] == self.spectral_weight.shape[2:]:
                state_dict[key] = resize_spectral_weight(stored, self.spectral_weight.shape[:2])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def no_weight_decay(self) -> set[str]:
        """Parameter names the optimizer must not decay: decay would pull the spectral filter
        towards zero, i.e. towards a mixer that passes nothing."""
        return {"spectral_weight"}


class DynamicSpectrumMixer(_SpectralWeightResizing):
    """The DSM token mixer: ``y = proj(idct2(S * W0 * A(S)))`` with ``S = dct2(x)``.

    ``x: (B, H, W, C) -> (B, H, W, C)``. ``W0`` is a learnable static spectral weight
    ``(H0, W0, C)`` shared by all inputs; ``A(S)`` the per-image band weights of the DSWG
    (:class:`~dsm_ref.dswg.DynamicSpectrumWeights`). ``dynamic=False`` drops ``A``: the static
    ablation, same everything else.

    Args:
        dim: channels ``C``.
        input_size: ``(H0, W0)`` the static weight is built for.
        dynamic: use the DSWG.
        spectrum_length: ``L`` of the DSWG. Not capped at the stage size: a 7x7 stage with
            ``L = 8`` has a few empty bands, and the DSWG's size never depends on the resolution,
            so checkpoints load at any input size. ``None`` means one band per coefficient at
            the build size (``L = max(H0, W0)``, the "full" spectrum length, tied to that size).
        static_init: start of ``W0``. paper: not stated / ours: ``"random"``, ``0.02 * N(0, 1)``
            as GFNet / why: a prototype saw an all-ones start cost the static arm ~5 points on
            CIFAR-10; ``"ones"`` is kept for the initialisation ablation.
        dct_method: ``"auto"``, ``"matmul"``, ``"fft"`` or ``"scipy"`` (:mod:`dsm_ref.dct`);
            all give the same numbers to float32 rounding. paper: the DCT layer costs
            O(HWC log2 HW), i.e. a fast transform / ours: ``"auto"``: the matmul for the grids
            of a 224 px model (and always when compiling or exporting), a fast transform from the
            crossover measured per device (:data:`dsm_ref.dct.AUTO_CROSSOVER`; on CPU scipy's
            from 224 per side) / why: on CPU the matmul's O(N) multiply-adds per value run near
            the machine's peak and beat every O(log N) path below that size (BENCHMARKS.md).
        overwrite_spectrum: at inference (no gradient recorded), write ``S * W0 * A(S)`` into
            the DCT's output ``S`` instead of a new tensor; the same bits either way. paper: not
            stated / ours: ``True`` / why: nothing needs ``S`` after the product, and on CPU a
            new full-size tensor's pages fault on first touch (``dsm_auto / dsm_out_of_place``
            in ``BENCHMARKS.md``). ``False`` is kept to measure that.
        **dswg_options: passed to the DSWG (``num_groups``, ``gate``, ``pool``, ...).
    """

    def __init__(
        self,
        dim: int,
        input_size: tuple[int, int],
        *,
        dynamic: bool = True,
        spectrum_length: int | None = SPECTRUM_LENGTH,
        static_init: str = "random",
        dct_method: str = "auto",
        overwrite_spectrum: bool = True,
        **dswg_options,
    ) -> None:
        super().__init__()
        check_choice("static_init", static_init, STATIC_INITS)
        height, width = input_size
        self.dim = dim
        self.input_size = (height, width)
        self.static_init = static_init
        self.dct_method = dct_method
        self.overwrite_spectrum = overwrite_spectrum
        self.spectral_weight = nn.Parameter(torch.empty(height, width, dim))
        length = max(height, width) if spectrum_length is None else spectrum_length
        self.dswg = DynamicSpectrumWeights(dim, length, **dswg_options) if dynamic else None
        self.proj = nn.Linear(dim, dim)
        self.init_weights()

    def init_weights(self) -> None:
        if self.static_init == "ones":
            nn.init.ones_(self.spectral_weight)
        else:
            nn.init.normal_(self.spectral_weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, self.dim, type(self).__name__)
        _, h, w, _ = x.shape
        spectrum = dct2(x, dims=(1, 2), method=self.dct_method)  # a new tensor: ours to overwrite
        weight = resize_spectral_weight(self.spectral_weight, (h, w)).to(spectrum.dtype)
        if self.dswg is None:
            filtered = _filter(spectrum, weight, self.overwrite_spectrum)
        else:  # S * W0 * A(S) in one call: the DSWG fuses the two products when training
            filtered = self.dswg(spectrum, static_weight=weight, inplace=self.overwrite_spectrum)
        return self.proj(idct2(filtered, dims=(1, 2), method=self.dct_method))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, input_size={self.input_size}, static_init={self.static_init!r}"


class GlobalFilter(_SpectralWeightResizing):
    """GFNet's global filter: ``y = proj(irfft2(rfft2(x) * K))``, optionally with a DSWG.

    ``x: (B, H, W, C) -> (B, H, W, C)``. ``K`` is a complex weight ``(H0, W0 // 2 + 1, C)``
    stored as ``(..., 2)`` real, initialised ``0.02 * N(0, 1)`` as GFNet does, resized bilinearly
    for other input sizes. Multiplication in the DFT domain is a *circular* convolution: it wraps
    around the image borders, which the DCT's symmetric extension does not.
    ``dynamic=True`` adds the DSWG on ``|rfft2(x)|`` (rows folded to ``|frequency|``): the
    dynamic-DFT arm of the transform ablation. The projection matches the DSM mixer's.
    The FFT runs in float32 (half-precision FFTs are limited to power-of-two sizes on CUDA).
    ``overwrite_spectrum``: as :class:`DynamicSpectrumMixer`'s, for ``rfft2(x)``; on by default
    so that the two compare like for like (GFNet's own code multiplies into a new tensor:
    ``gfnet_upstream`` in ``BENCHMARKS.md``). A complex product written in place can differ
    from a new one in the last bit.
    """

    def __init__(
        self,
        dim: int,
        input_size: tuple[int, int],
        *,
        dynamic: bool = False,
        spectrum_length: int | None = SPECTRUM_LENGTH,
        overwrite_spectrum: bool = True,
        **dswg_options,
    ) -> None:
        super().__init__()
        height, width = input_size
        self.dim = dim
        self.input_size = (height, width)
        self.overwrite_spectrum = overwrite_spectrum
        self.spectral_weight = nn.Parameter(torch.empty(height, width // 2 + 1, dim, 2))
        full_length = max(height // 2 + 1, width // 2 + 1)
        length = full_length if spectrum_length is None else spectrum_length
        self.dswg = (
            DynamicSpectrumWeights(dim, length, layout="rfft", **dswg_options) if dynamic else None
        )
        self.proj = nn.Linear(dim, dim)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.normal_(self.spectral_weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, self.dim, type(self).__name__)
        _, h, w, _ = x.shape
        spectrum = torch.fft.rfft2(x.float(), dim=(1, 2), norm="ortho")  # a new tensor
        weight = resize_spectral_weight(self.spectral_weight, (h, w // 2 + 1))
        kernel = torch.view_as_complex(weight.float().contiguous())
        if self.dswg is None:
            filtered = _filter(spectrum, kernel, self.overwrite_spectrum)
        else:
            filtered = self.dswg(spectrum, static_weight=kernel, inplace=self.overwrite_spectrum)
        y = torch.fft.irfft2(filtered, s=(h, w), dim=(1, 2), norm="ortho")
        return self.proj(y.to(x.dtype))


class DynamicFilter(_SpectralWeightResizing):
    """DFFormer's dynamic filter (arXiv 2303.03932): a per-image global filter on the DFT.

    ``x: (B, H, W, C) -> (B, H, W, C)``: ``y = proj(irfft2(rfft2(x) * K(x)))`` where the filter
    ``K(x) = sum_k a_k(x) K_k`` is a mixture of ``num_filters`` learned complex filters
    ``K_k (H0, W0 // 2 + 1, C)``, and the mixture weights ``a(x) (B, num_filters, C)`` come from a
    two-layer MLP on the globally pooled input with a softmax over the filters (one mixture per
    channel). The closest peer of the DSM mixer: both adapt a global spectral filter to each
    image; DSM re-weights DCT *bands*, this mixes whole DFT *filters*.

    Written from the paper's description. Departures: no channel expansion before the filter
    and the same output projection as every other mixer here, so the body and its cost stay
    those of the other arms (DFFormer expands by 2 with StarReLU); filters start at
    ``0.02 * N(0, 1)`` like GFNet's; the MLP's hidden width is ``C / 4`` (at least 16).
    """

    def __init__(self, dim: int, input_size: tuple[int, int], *, num_filters: int = 4,
                 hidden_ratio: float = 0.25) -> None:
        super().__init__()
        if num_filters < 1:
            raise ValueError(f"num_filters must be >= 1, got {num_filters}")
        height, width = input_size
        self.dim = dim
        self.input_size = (height, width)
        self.num_filters = num_filters
        self.spectral_weight = nn.Parameter(torch.empty(height, width // 2 + 1, num_filters, dim,
                                                        2))
        hidden = max(16, round(dim * hidden_ratio))
        self.reweight = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(),
                                      nn.Linear(hidden, num_filters * dim))
        self.proj = nn.Linear(dim, dim)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.normal_(self.spectral_weight, std=0.02)

    def mixture_weights(self, x: Tensor) -> Tensor:
        """``(B, H, W, C) -> (B, num_filters, C)``: softmax over the filters, per channel."""
        logits = self.reweight(x.mean(dim=(1, 2)))
        return torch.softmax(logits.reshape(x.shape[0], self.num_filters, self.dim), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, self.dim, type(self).__name__)
        _, h, w, _ = x.shape
        spectrum = torch.fft.rfft2(x.float(), dim=(1, 2), norm="ortho")
        weight = resize_spectral_weight(self.spectral_weight, (h, w // 2 + 1)).float()
        filters = torch.view_as_complex(weight.contiguous())  # (h, w', K, C)
        mixture = self.mixture_weights(x.float()).to(filters.dtype)
        image_filter = torch.einsum("bkc,hwkc->bhwc", mixture, filters)
        y = torch.fft.irfft2(spectrum * image_filter, s=(h, w), dim=(1, 2), norm="ortho")
        return self.proj(y.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, input_size={self.input_size}, "
                f"num_filters={self.num_filters}")


class Attention(nn.Module):
    """Global multi-head self-attention over the ``H * W`` tokens (through SDPA).

    ``x: (B, H, W, C) -> (B, H, W, C)``; ``head_dim`` channels per head (``C % head_dim == 0``,
    else one head). No position encoding: the block's other mixers have none either.
    ``head_dim``: ours 32 / why: the head size of Swin and PoolFormer's attention stages, so
    ``dsm_micro``'s 32-128 channels get 1-4 heads, and a comparison arm at the same width
    costs what those models' attention costs.
    """

    def __init__(self, dim: int, input_size: tuple[int, int] | None = None, *,
                 head_dim: int = 32, qkv_bias: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = dim // head_dim if dim % head_dim == 0 and dim >= head_dim else 1
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, self.dim, type(self).__name__)
        b, h, w, c = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, h, w, c))


class DepthwiseConvMixer(nn.Module):
    """Depthwise ``k x k`` convolution, then the pointwise projection. ``(B, H, W, C)`` in/out."""

    def __init__(self, dim: int, input_size: tuple[int, int] | None = None, *,
                 kernel_size: int = 7) -> None:
        super().__init__()
        self.dim = dim
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, self.dim, type(self).__name__)
        return self.proj(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class IdentityMixer(nn.Module):
    """No token mixing: only the pointwise projection every other mixer ends with.

    The "no spectral mixing" arm of the transform ablation: what the MLP body achieves alone.
    """

    def __init__(self, dim: int, input_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, self.dim, type(self).__name__)
        return self.proj(x)

