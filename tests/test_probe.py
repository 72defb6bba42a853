"""dsm_ref.probe: the measurements of what a DSWG selects, on cases with known answers."""

import pytest
import torch

from dsm_ref.models import create_model
from dsm_ref.probe import (
    band_weight_stats,
    dswg_modules,
    last_layer_grad_norms,
    probe_model,
    record_band_weights,
)


def test_static_weights_have_no_spread_and_uniform_ones_full_entropy():
    weights = torch.ones(10, 2, 4, 4)
    stats = band_weight_stats(weights, torch.arange(10) % 3)
    assert stats["spread"] == pytest.approx(0.0) and stats["entropy"] == pytest.approx(1.0)


def test_weights_set_by_the_factor_are_fully_explained_and_empty_bands_ignored():
    factor = torch.arange(12) % 3
    weights = torch.zeros(12, 1, 2, 2)
    weights[:, 0, 0, 0] = 1.0 + factor  # band (0, 0) follows the factor exactly
    weights[:, 0, 0, 1] = 2.0
    # bands (1, 0) and (1, 1) are empty (weight 0 for every image) and must not count
    stats = band_weight_stats(weights, factor)
    assert stats["explained"] == pytest.approx(1.0)
    assert 0.0 < stats["entropy"] < 1.0 and stats["spread"] > 0.0
    noise = band_weight_stats(torch.rand(300, 1, 2, 2, generator=torch.Generator().manual_seed(0)),
                              torch.arange(300) % 3)
    assert noise["explained"] < 0.05
    with pytest.raises(ValueError, match=r"factor must be \(N,\)"):
        band_weight_stats(weights, factor[:5])


def test_probe_a_model_records_every_dswg():
    torch.manual_seed(0)
    model = create_model("dsm_micro")
    images, labels = torch.randn(6, 3, 32, 32), torch.arange(6) % 10
    weights = record_band_weights(model, images, batch_size=4)
    assert list(weights) == list(dswg_modules(model)) and len(weights) == 5
    assert all(w.shape == (6, 4, 4, 4) for w in weights.values())
    # A fresh DSWG starts at the gate's mean (1 on occupied bands): no spread yet ...
    first = band_weight_stats(weights["stages.0.blocks.0.mixer.dswg"])
    assert first["spread"] == pytest.approx(0.0, abs=1e-6)
    # ... but with its unit-scale first layer, the gradient reaches its last layer at once.
    grads = last_layer_grad_norms(model, images, labels)
    assert all(grads[name] > 0 for name in weights) and grads["other (median)"] > 0
    rows = probe_model(model, images, labels, factor=torch.arange(6) % 2)
    assert {"dswg", "L", "spread", "entropy", "explained", "grad_norm"} <= set(rows[0])
    for training in (True, False):  # recording runs in eval mode and restores the caller's mode
        model.train(training)
        record_band_weights(model, images[:2])
        assert model.training is training


def test_the_first_form_starts_at_a_saddle():
    """With the first layer at std 0.02 and the last at zero, almost no gradient reaches the
    DSWG's last layer: the diagnosis behind the default ``hidden_init="lecun"``."""
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    norms = {}
    for init in ("small", "lecun"):
        torch.manual_seed(0)
        model = create_model("dsm_micro", mixer_options={"hidden_init": init,
                                                         "descriptor_norm": init == "lecun"})
        grads = last_layer_grad_norms(model, images, labels)
        norms[init] = sum(v for k, v in grads.items() if k.endswith(".dswg"))
    assert norms["small"] * 10 < norms["lecun"]


def test_no_dswg_is_a_clear_error():
    model = create_model("dsm_micro", token_mixer="static")
    with pytest.raises(ValueError, match="no DSWG"):
        record_band_weights(model, torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        record_band_weights(create_model("dsm_micro"), torch.randn(3, 32, 32))
