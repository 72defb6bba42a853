"""dsm_ref.probe: the measurements of what a DSWG selects, on cases with known answers."""

import pytest
import torch

from dsm_ref.models import create_model
from dsm_ref.probe import (
    band_weight_stats,
    dswg_modules,
    fixed_band_weights,
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


def test_fixed_band_weights_give_every_image_the_same_selection_and_are_undone():
    torch.manual_seed(0)
    model = create_model("dsm_micro").eval()
    for module in dswg_modules(model).values():  # fc2 starts at 0: every image weighs 1
        torch.nn.init.normal_(module.fc2.weight, std=0.5)
    images = torch.randn(4, 3, 32, 32)
    recorded = record_band_weights(model, images)
    with torch.no_grad():
        own = model(images)
        with fixed_band_weights(model, {name: w[0] for name, w in recorded.items()}):
            fixed = model(images)
            assert all(torch.equal(w, recorded[name][0].expand_as(w))
                       for name, w in record_band_weights(model, images).items())
        after = model(images)
    # image 0's own weights: its output is unchanged; the others now use image 0's weights
    torch.testing.assert_close(fixed[0], own[0], rtol=1e-5, atol=1e-6)
    assert (fixed[1:] - own[1:]).abs().amax() > 1e-4
    assert torch.equal(after, own)
    assert all("band_weights" not in m.__dict__ for m in dswg_modules(model).values())


def test_fixed_band_weights_refuse_unknown_names_and_wrong_shapes():
    model = create_model("dsm_micro")
    name = next(iter(dswg_modules(model)))
    with pytest.raises(ValueError, match="no DSWG named"):
        with fixed_band_weights(model, {"stages.9.mixer.dswg": torch.ones(4, 4, 4)}):
            pass
    with pytest.raises(ValueError, match=r"must be \(G, L, L\) = \(4, 4, 4\), got \(4, 4\)"):
        with fixed_band_weights(model, {name: torch.ones(4, 4)}):
            pass
