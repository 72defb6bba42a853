"""The DSM model family: block -> stage -> model -> registered variants (timm's layout).

A MetaFormer-style hierarchy: patchify stem (stride 4; 2 for 32-px inputs) -> 4 stages joined by
stride-2 downsampling -> global average pool -> LayerNorm -> linear head. Each block is

    x = x + drop_path(ls1(token_mixer(norm1(x))))
    x = x + drop_path(ls2(mlp(norm2(x))))

on channels-last tokens ``(B, H, W, C)``. The token mixer is passed as a class or a name
(:data:`TOKEN_MIXERS`), so the same body runs the DSM mixer, its static ablation, GFNet's filter,
attention, a depthwise conv, or no mixing at all: comparisons at equal cost.

paper: a backbone for classification, detection and segmentation; its stages and variant sizes
are not public / ours: a four-stage hierarchy in the depths and widths of peers we chose
(GFNet-H, Hire-MLP, Wave-MLP, Swin-T: MLP-like, spectral and attention backbones the abstract's
"transformer- and MLP-based models" name as a kind), so each variant sits in one peer's
parameter/FLOP budget and dense heads get strides 4-32. The mixer's projection and the DCT
matmuls cost ~20% more than GFNet-H's filter at equal depth, so our stages 1, 2 and 4 are one
block shallower (3 -> 2).
FLOPs are multiply-adds (the convention of the peers' tables), counted by
``torch.utils.flop_counter`` with the DCT matmuls included. Defined in notebook 04.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from .checks import check_choice
from .dswg import DynamicSpectrumWeights
from .layers import Downsample, DropPath, LayerScale, Mlp, PatchStem
from .mixers import (
    Attention,
    DepthwiseConvMixer,
    DynamicFilter,
    DynamicSpectrumMixer,
    GlobalFilter,
    IdentityMixer,
)
from .pretrained import load_pretrained, read_weights, weights_path

__all__ = [
    "DSMBlock",
    "DSMStage",
    "DSM",
    "TOKEN_MIXERS",
    "create_model",
    "init_weights",
    "list_models",
    "mixer_options",
    "EXECUTION_OPTIONS",
    "spelled_out_options",
    "register_model",
    "weight_decay_groups",
]

MixerFactory = Callable[..., nn.Module]

TOKEN_MIXERS: dict[str, MixerFactory] = {
    "dsm": partial(DynamicSpectrumMixer, dynamic=True),
    "static": partial(DynamicSpectrumMixer, dynamic=False),
    "gfnet": partial(GlobalFilter, dynamic=False),
    "gfnet_dynamic": partial(GlobalFilter, dynamic=True),
    "dynamic_filter": DynamicFilter,
    "attention": Attention,
    "dwconv": DepthwiseConvMixer,
    "identity": IdentityMixer,
}


# Mixer options that change how a mixer computes, not what: a model built with either value
# computes the same function and trains the same way, so an ablation's run key leaves them out.
EXECUTION_OPTIONS = frozenset({"overwrite_spectrum"})


def mixer_options(token_mixer: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every keyword option of the registered mixer ``token_mixer`` with its default, then
    ``options`` applied: the full description of the mixer a model builds (an ablation's run key
    hashes it, so a changed default gives new runs). Mixers that pass ``**dswg_options`` on to
    their DSWG include the DSWG's options. An unknown mixer or option raises ``ValueError``
    naming the valid ones."""
    check_choice("token_mixer", token_mixer, TOKEN_MIXERS)
    parameters = dict(inspect.signature(TOKEN_MIXERS[token_mixer]).parameters)
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):  # **dswg_options
        parameters = {**inspect.signature(DynamicSpectrumWeights).parameters, **parameters}
    valid = [name for name, p in parameters.items()
             if name not in ("dim", "input_size") and p.kind not in (p.VAR_KEYWORD,
                                                                      p.VAR_POSITIONAL)]
    for name in options or {}:
        if name not in valid:
            raise ValueError(f"unknown option {name!r} of token_mixer {token_mixer!r}; "
                             f"expected one of: {', '.join(sorted(valid))}")
    resolved = {name: p.default for name, p in parameters.items()
                if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}
    resolved.update(options or {})
    return resolved


def spelled_out_options(model_options: dict[str, Any] | None) -> dict[str, Any]:
    """A model's ``model_options`` with its token mixer named and every option of that mixer
    spelled out, defaults included (:func:`mixer_options`). Trained weights store this, so a
    default that changes later (e.g. the DSWG's descriptor) does not change the model they
    load into. Mixers given as classes are left as they are."""
    options = dict(model_options or {})
    name = options.get("token_mixer", "dsm")
    if not isinstance(name, str):
        return options
    return {**options, "token_mixer": name,
            "mixer_options": mixer_options(name, options.get("mixer_options"))}


def merged_options(stored: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``stored`` model options with ``overrides`` applied; ``mixer_options`` are merged key by
    key while the token mixer stays the stored one (another mixer takes only its own)."""
    merged = {**stored, **overrides}
    if merged.get("token_mixer") == stored.get("token_mixer"):
        merged["mixer_options"] = {**(stored.get("mixer_options") or {}),
                                   **(overrides.get("mixer_options") or {})}
    elif "mixer_options" not in overrides:
        merged.pop("mixer_options", None)
    return merged


def _resolve_mixer(token_mixer: str | MixerFactory, options: dict | None) -> MixerFactory:
    if isinstance(token_mixer, str):
        if token_mixer not in TOKEN_MIXERS:
            raise ValueError(
                f"unknown token_mixer {token_mixer!r}; expected one of {sorted(TOKEN_MIXERS)} "
                "or a class called as Mixer(dim, input_size, **options)"
            )
        mixer_options(token_mixer, options)  # an unknown option fails here, by name
        token_mixer = TOKEN_MIXERS[token_mixer]
    return partial(token_mixer, **options) if options else token_mixer


class DSMBlock(nn.Module):
    """Pre-norm residual block: token mixer then channel MLP. ``(B, H, W, C) -> (B, H, W, C)``."""

    def __init__(
        self,
        dim: int,
        input_size: tuple[int, int],
        token_mixer: MixerFactory = DynamicSpectrumMixer,
        *,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        layer_scale_init: float | None = None,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.mixer = token_mixer(dim, input_size)
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path1(self.ls1(self.mixer(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class DSMStage(nn.Module):
    """Optional stride-2 downsampling, then ``depth`` blocks at ``input_size``.

    ``(B, H, W, C_in) -> (B, H', W', C)`` with ``H' = H // 2`` if ``downsample`` else ``H``.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        input_size: tuple[int, int],
        *,
        downsample: bool,
        drop_path_rates: Sequence[float],
        **block_options,
    ) -> None:
        super().__init__()
        self.downsample = Downsample(in_dim, dim) if downsample else nn.Identity()
        self.blocks = nn.Sequential(
            *[DSMBlock(dim, input_size, drop_path=drop_path_rates[i], **block_options)
              for i in range(depth)]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class DSM(nn.Module):
    """Dynamic Spectrum Mixer backbone. ``(B, in_chans, H, W) -> (B, num_classes)``.

    Args:
        depths, dims: blocks and channels of the 4 stages.
        num_classes: classes of the head; 0 gives pre-logit features ``(B, dims[-1])``.
        img_size: ``(H, W)`` (or one int) the spectral weights are built for; any size at least
            ``stem_stride * 8`` runs, the weights are resized.
        stem_stride: 4 for ImageNet-size inputs, 2 for 32-px presets.
        token_mixer: a name from :data:`TOKEN_MIXERS` or a class ``Mixer(dim, input_size, ...)``.
        mixer_options: keyword arguments for every mixer (e.g. ``spectrum_length``, ``gate``).
        mlp_ratio: hidden width of the channel MLP over ``C``. paper: not stated / ours: 4 /
            why: the ratio of ViT, Swin, ConvNeXt and GFNet, so the FLOP budgets of those
            peers apply unchanged.
        drop_path_rate: stochastic depth of the last block; linear from 0 over the blocks.
        layer_scale_init: start of the per-channel layer scale; ``None`` disables it. paper:
            not stated / ours: ``1e-5`` on ``dsm_l`` only / why: CaiT and ConvNeXt use it to
            keep very deep or wide residual stacks trainable at start; the smaller variants
            train without it, and a scale that starts near zero also slows the first epochs
            the CPU budgets of the course depend on.
        features_only: return the 4 stage maps ``(B, C_i, H_i, W_i)`` (strides
            ``stem_stride * (1, 2, 4, 8)``) instead of logits; described by ``feature_info``.
    """

    def __init__(
        self,
        depths: Sequence[int] = (3, 3, 10, 3),
        dims: Sequence[int] = (64, 128, 256, 512),
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int | tuple[int, int] = 224,
        stem_stride: int = 4,
        token_mixer: str | MixerFactory = "dsm",
        mixer_options: dict | None = None,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        layer_scale_init: float | None = None,
        head_dropout: float = 0.0,
        features_only: bool = False,
    ) -> None:
        super().__init__()
        if len(depths) != len(dims):
            raise ValueError(f"depths {tuple(depths)} and dims {tuple(dims)} differ in length")
        height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.min_input_size = stem_stride * 2 ** (len(dims) - 1)
        self.features_only = features_only
        mixer = _resolve_mixer(token_mixer, mixer_options)
        # One draw from the global RNG whatever the architecture: the draws the layers make while
        # they are built are undone below, and init_weights keys every module's values on it.
        init_seed = int(torch.randint(0, 2**62, (), device="cpu").item())
        rng_after_seed = torch.get_rng_state()
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]

        self.stem = PatchStem(in_chans, dims[0], stem_stride)
        size = (height // stem_stride, width // stem_stride)
        stages, self.feature_info = [], []
        for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            if i > 0:
                size = (size[0] // 2, size[1] // 2)
            if min(size) < 1:
                raise ValueError(f"img_size {(height, width)} is too small for {len(dims)} stages")
            start = sum(depths[:i])
            stages.append(DSMStage(
                dims[i - 1] if i else dim, dim, depth, size, downsample=i > 0,
                drop_path_rates=rates[start:start + depth], token_mixer=mixer,
                mlp_ratio=mlp_ratio, layer_scale_init=layer_scale_init,
            ))
            self.feature_info.append(
                {"num_chs": dim, "reduction": stem_stride * 2**i, "module": f"stages.{i}"}
            )
        self.stages = nn.ModuleList(stages)
        self.num_features = dims[-1]
        if features_only:
            self.norm = self.head_dropout = self.head = None
        else:
            self.norm = nn.LayerNorm(dims[-1])
            self.head_dropout = nn.Dropout(head_dropout)
            self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        torch.set_rng_state(rng_after_seed)
        self.init_weights(init_seed)

    def init_weights(self, seed: int) -> None:
        """Initialises every module from its own random stream: :func:`init_weights`."""
        init_weights(self, seed)

    def no_weight_decay(self) -> set[str]:
        """Full names of the parameters its modules exclude from weight decay (timm's
        convention: each module lists its own, e.g. a mixer's ``spectral_weight``)."""
        names = set()
        for prefix, module in self.named_modules():
            if module is not self and hasattr(module, "no_weight_decay"):
                names.update(f"{prefix}.{name}" for name in module.no_weight_decay())
        return names

    def _check_input(self, x: Tensor) -> None:
        expected = f"(B, {self.in_chans}, H, W) with H, W >= {self.min_input_size}"
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected an image batch {expected}, got {shape}")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"expected {expected}, got {x.shape[1]} channels: {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(f"expected {expected}, got spatial size {tuple(x.shape[-2:])}")
        if not x.is_floating_point():
            raise TypeError(f"expected a floating-point image batch {expected}, got {x.dtype}")

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """``(B, in_chans, H, W)`` -> the 4 stage outputs, channels-last ``(B, H_i, W_i, C_i)``."""
        self._check_input(x)
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, in_chans, H, W) -> (B, H/32, W/32, C_last)`` (stride ``stem_stride * 8``)."""
        return self.forward_stages(x)[-1]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """``(B, h, w, C) -> (B, num_classes)``, or the pooled, normed ``(B, C)``."""
        x = self.head_dropout(self.norm(x.mean(dim=(1, 2))))
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self.features_only:
            return [f.permute(0, 3, 1, 2) for f in self.forward_stages(x)]
        return self.forward_head(self.forward_features(x))


def init_weights(module: nn.Module, seed: int) -> None:
    """Initialises ``module`` and every submodule from its own random stream, keyed by
    ``(seed, submodule name)``; works on a whole model or on a mixer built alone.

    Linear and conv layers: truncated normal (std 0.02), zero bias; then every submodule with an
    ``init_weights()`` method (the spectral weights, the DSWG's zero last layer) runs it, after
    the generic pass, so it has the last word. Because each submodule's draws depend only on the
    seed and its own name, never on the order modules are visited, two models built at the same
    seed hold identical values in every parameter they share, whatever else one of them adds:
    the arms of an ablation (dynamic vs static, one spectrum length vs another) start from the
    same weights, and only the parameters an arm adds are new. (A mixer initialised alone gets
    the same scheme; its values differ from the same mixer's inside a model, whose names carry
    the block's place.) The draws run on the CPU generator (parameters are on the CPU when a
    model is built).
    """
    modules = list(module.named_modules())
    for name, sub in modules:
        if isinstance(sub, (nn.Linear, nn.Conv2d)):
            with _module_rng(seed, name):
                nn.init.trunc_normal_(sub.weight, std=0.02)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
    for name, sub in modules:
        if hasattr(sub, "init_weights") and not isinstance(sub, DSM):  # DSM's calls this
            with _module_rng(seed, name + ".init_weights"):
                sub.init_weights()


@contextmanager
def _module_rng(seed: int, name: str):
    """The CPU RNG seeded from ``(seed, name)`` for the block's duration, then restored."""
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int.from_bytes(digest, "little") >> 1)
        yield


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups: decay on matrices and convs; none on biases, norms and layer
    scales (1-D) nor on the parameters the model lists in ``no_weight_decay()`` (the spectral
    weights)."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name in skip:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# --- registered variants ------------------------------------------------------------------------

_MODELS: dict[str, Callable[..., DSM]] = {}


def register_model(fn: Callable[..., DSM]) -> Callable[..., DSM]:
    """Adds a variant function to the registry under its name."""
    _MODELS[fn.__name__] = fn
    return fn


def _build(config: dict, overrides: dict) -> DSM:
    return DSM(**{**config, **overrides})


@register_model
def dsm_micro(**overrides) -> DSM:
    """32-px inputs (CIFAR), stem stride 2: trains in minutes on 2 CPU cores."""
    return _build(dict(depths=(1, 1, 2, 1), dims=(32, 64, 96, 128), img_size=32,
                       stem_stride=2, num_classes=10), overrides)


@register_model
def dsm_nano(**overrides) -> DSM:
    """64-224 px inputs on a CPU: the course's small ImageNet-style model."""
    return _build(dict(depths=(2, 2, 4, 2), dims=(32, 64, 128, 256), img_size=64), overrides)


@register_model
def dsm_t(**overrides) -> DSM:
    """GFNet-H-Ti budget (15M / 2.0G at 224). Ours: 13.5M / 2.08G."""
    return _build(dict(depths=(2, 2, 10, 2), dims=(64, 128, 256, 512), drop_path_rate=0.1),
                  overrides)


@register_model
def dsm_s(**overrides) -> DSM:
    """GFNet-H-S / Swin-T budget (28-32M / 4.5G at 224). Ours: 28.9M / 4.56G."""
    return _build(dict(depths=(2, 2, 10, 2), dims=(96, 192, 384, 768), drop_path_rate=0.2),
                  overrides)


@register_model
def dsm_m(**overrides) -> DSM:
    """GFNet-H-B / Hire-MLP-B budget (54-58M / 8.1-8.4G at 224). Ours: 54.0M / 8.53G."""
    return _build(dict(depths=(2, 2, 24, 3), dims=(96, 192, 384, 768), drop_path_rate=0.3),
                  overrides)


@register_model
def dsm_l(**overrides) -> DSM:
    """Hire-MLP-L / DynaMixer-L budget (96-97M / 13.4G at 224). Ours: 89.3M / 14.09G."""
    return _build(dict(depths=(2, 2, 22, 3), dims=(128, 256, 512, 1024), drop_path_rate=0.4,
                       layer_scale_init=1e-5), overrides)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_MODELS)


def create_model(name: str, pretrained: bool = False, **overrides) -> DSM:
    """Builds a registered variant; ``overrides`` replace its defaults, e.g.
    ``create_model("dsm_s", num_classes=100, img_size=288, token_mixer="gfnet")``.

    ``pretrained=True`` loads the trained weights shipped with the package (``dsm_micro``:
    CIFAR-10) into the model built with the options stored with them, ``overrides`` on top
    (:func:`dsm_ref.pretrained.pretrained_models` lists them, and
    :func:`dsm_ref.pretrained.weights_info` gives the input normalisation they expect); a
    variant without weights, or overrides that change a parameter's shape, raise
    :class:`dsm_ref.pretrained.WeightsError`.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}")
    if not pretrained:
        return _MODELS[name](**overrides)
    stored = read_weights(weights_path(name))  # fails fast for a variant without weights
    # Built with the options the weights were trained with (the overrides on top).
    model = _MODELS[name](**merged_options(stored["model_options"], overrides))
    return load_pretrained(model, name, overrides, stored=stored)
