"""What a DSWG selects: its band weights on real inputs, and how much they vary and why.

A DSWG "selects" when its band weights differ from image to image in a way tied to the image's
content. Four measurements per DSWG (one per block of a DSM model), all on a batch of images:

- ``spread``: the band weights' std over images divided by their mean, averaged over the
  groups and occupied bands. 0 means a static filter in disguise.
- ``entropy``: the gate's entropy over the occupied bands of a group divided by its maximum
  ``log(#bands)``, averaged over images and groups. 1 means uniform weights (all bands equal).
- ``grad_norm``: the norm of the loss gradient reaching the DSWG's last layer (``fc2.weight``)
  on the batch; a DSWG whose gradient is orders of magnitude below the rest does not learn.
- ``explained``: with a per-image factor (e.g. the spectral tasks' informative band), the share
  of the weights' variance over images that the factor explains (the correlation ratio eta^2,
  averaged over groups and bands weighted by variance). 0: unrelated to the factor; 1: the
  weights are a function of it.

``fixed_band_weights`` freezes the selection of a trained model (every image gets the same band
weights, e.g. their mean): the accuracy it loses measures how much the trained network relies on
its per-image selection (not what a DSWG gains over static weights trained as such).

Used by notebook 06 and ``python -m dsm_ref.probe``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .dswg import DynamicSpectrumWeights

__all__ = ["dswg_modules", "record_band_weights", "band_weight_stats", "fixed_band_weights",
           "last_layer_grad_norms", "probe_model"]


def dswg_modules(model: nn.Module) -> dict[str, DynamicSpectrumWeights]:
    """The model's DSWGs by module name (e.g. ``stages.0.blocks.0.mixer.dswg``)."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, DynamicSpectrumWeights)}


@contextmanager
def _recording(model: nn.Module) -> Iterator[dict[str, list[Tensor]]]:
    """Collects every DSWG's band weights ``(B, G, L, L)`` of each forward, by module name."""
    records: dict[str, list[Tensor]] = {}
    handles = []
    for name, module in dswg_modules(model).items():
        # before the forward: at inference the mixers let the DSWG overwrite the spectrum
        def hook(mod, args, name=name):
            records.setdefault(name, []).append(mod.band_weights(args[0]).detach().float().cpu())
        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def record_band_weights(model: nn.Module, images: Tensor, *,
                        batch_size: int = 256) -> dict[str, Tensor]:
    """Band weights ``(N, G, L, L)`` of every DSWG for ``images (N, 3, H, W)`` (eval mode)."""
    if images.ndim != 4:
        raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}")
    if not dswg_modules(model):
        raise ValueError("the model has no DSWG (token_mixer 'dsm' or 'gfnet_dynamic')")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with _recording(model) as records:
            for start in range(0, len(images), batch_size):
                model(images[start:start + batch_size].to(device))
    finally:
        model.train(was_training)
    return {name: torch.cat(parts) for name, parts in records.items()}


def band_weight_stats(weights: Tensor, factor: Tensor | None = None) -> dict[str, float]:
    """``spread``, ``entropy`` and (given ``factor (N,)``) ``explained`` of ``weights (N, G, L,
    L)``; bands whose weight is 0 for every image (empty bands) are left out."""
    n = weights.shape[0]
    flat = weights.reshape(n, weights.shape[1], -1).double()  # (N, G, bands)
    occupied = flat.abs().sum(dim=(0, 1)) > 0
    flat = flat[:, :, occupied]
    mean = flat.mean(0)
    spread = (flat.std(0) / mean.abs().clamp_min(1e-12)).mean().item() if n > 1 else 0.0
    share = flat / flat.sum(-1, keepdim=True).clamp_min(1e-12)
    entropy = -(share * share.clamp_min(1e-12).log()).sum(-1)
    bands = flat.shape[-1]
    stats = {"spread": spread,
             "entropy": (entropy / max(torch.log(torch.tensor(float(bands))).item(), 1e-12)
                         ).mean().item() if bands > 1 else 1.0}
    if factor is not None:
        if factor.shape != (n,):
            raise ValueError(f"factor must be (N,)=({n},), got {tuple(factor.shape)}")
        total = ((flat - mean) ** 2).sum(0)  # (G, bands)
        between = torch.zeros_like(total)
        for value in factor.unique():
            members = flat[factor == value]
            between += len(members) * (members.mean(0) - mean) ** 2
        stats["explained"] = (between.sum() / total.sum().clamp_min(1e-30)).item()
    return stats


@contextmanager
def fixed_band_weights(model: nn.Module, weights: dict[str, Tensor]) -> Iterator[nn.Module]:
    """Within the ``with`` block, each DSWG named in ``weights`` gives every image the same band
    weights ``(G, L, L)`` (e.g. its mean over a set of images): the trained network with its
    spectrum selection made static, everything else unchanged. Comparing its accuracy with the
    model's own measures how much the trained network relies on its per-image selection."""
    modules = dswg_modules(model)
    unknown = sorted(set(weights) - set(modules))
    if unknown:
        raise ValueError(f"no DSWG named {unknown} in the model; its DSWGs: {sorted(modules)}")
    for name, fixed in weights.items():
        module = modules[name]
        expected = (module.num_groups, module.spectrum_length, module.spectrum_length)
        if tuple(fixed.shape) != expected:
            raise ValueError(f"band weights for {name} must be (G, L, L) = {expected}, got "
                             f"{tuple(fixed.shape)}")
    try:
        for name, fixed in weights.items():
            # an instance attribute shadows the method that forward() calls
            modules[name].band_weights = (
                lambda spectrum, fixed=fixed, **_: fixed.to(spectrum.device).expand(
                    spectrum.shape[0], *fixed.shape))
        yield model
    finally:
        for name in weights:
            modules[name].__dict__.pop("band_weights", None)


def last_layer_grad_norms(model: nn.Module, images: Tensor, labels: Tensor) -> dict[str, float]:
    """Norm of the cross-entropy gradient at each DSWG's ``fc2.weight`` on one batch, beside
    the median norm over the model's other weight matrices (``"other (median)"``)."""
    device = next(model.parameters()).device
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(images.to(device)), labels.to(device))
    loss.backward()
    norms = {name: m.fc2.weight.grad.norm().item() for name, m in dswg_modules(model).items()}
    others = [p.grad.norm().item() for name, p in model.named_parameters()
              if p.grad is not None and p.ndim == 2 and ".dswg." not in name]
    norms["other (median)"] = float(torch.tensor(others).median()) if others else float("nan")
    model.zero_grad(set_to_none=True)
    return norms


def probe_model(model: nn.Module, images: Tensor, labels: Tensor,
                factor: Tensor | None = None) -> list[dict]:
    """One row per DSWG: name, grid size ``L``, and the four measurements of the module doc."""
    weights = record_band_weights(model, images)
    grads = last_layer_grad_norms(model, images[:256], labels[:256])
    rows = []
    for name, w in weights.items():
        rows.append({"dswg": name, "L": w.shape[-1], **band_weight_stats(w, factor),
                     "grad_norm": grads[name], "other_grad_median": grads["other (median)"]})
    return rows
