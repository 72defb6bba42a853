"""Every registered model, in the spirit of timm's model tests, at small sizes on CPU."""

import warnings

import pytest
import torch

from dsm_ref import create_model, list_models
from dsm_ref.models import DSM, TOKEN_MIXERS, weight_decay_groups

SMALL = {"dsm_micro": 32}  # every other model is tested at 64 x 64
PINNED_PARAMS = {
    "dsm_t": 13_455_528,
    "dsm_s": 28_903_432,
    "dsm_m": 54_008_872,
    "dsm_l": 89_349_320,
}


def _small_model(name: str, **overrides) -> DSM:
    size = SMALL.get(name, 64)
    # No stochastic depth: a batch of 2 could drop a whole branch and leave it without gradient.
    return create_model(name, img_size=size, num_classes=7, drop_path_rate=0.0, **overrides)


def _activate_dswgs(model: torch.nn.Module) -> None:
    """Moves every DSWG's zero-initialised last layer, as one training step would."""
    for name, param in model.named_parameters():
        if name.endswith("dswg.fc2.weight"):
            torch.nn.init.normal_(param, std=0.05)


@pytest.fixture(scope="module", params=list_models())
def small_model(request):
    torch.manual_seed(0)
    return request.param, _small_model(request.param)


def test_registry_lists_the_family():
    assert {"dsm_micro", "dsm_nano", "dsm_t", "dsm_s", "dsm_m", "dsm_l"} <= set(list_models())
    with pytest.raises(ValueError, match="available: .*dsm_s"):
        create_model("dsm_xl")


@pytest.mark.parametrize("name", sorted(PINNED_PARAMS))
def test_param_counts_pinned(name):
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PINNED_PARAMS[name]


def test_forward_backward_every_parameter_gets_a_gradient(small_model):
    name, model = small_model
    model.train()
    _activate_dswgs(model)
    size = SMALL.get(name, 64)
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, f"no gradient for {missing}"
    model.zero_grad(set_to_none=True)


def test_resolution_change_and_batch_of_one(small_model):
    name, model = small_model
    model.eval()
    size = SMALL.get(name, 64)
    for shape in [(size + size // 2, size), (size * 2, size * 2)]:
        with torch.no_grad():
            out = model(torch.randn(1, 3, *shape))
        assert out.shape == (1, 7) and torch.isfinite(out).all()


def test_features_only(small_model):
    name, _ = small_model
    size = SMALL.get(name, 64)
    model = _small_model(name, features_only=True).eval()
    with torch.no_grad():
        features = model(torch.randn(2, 3, size, size + 16))
    assert len(features) == len(model.feature_info) == 4
    for feature, info in zip(features, model.feature_info, strict=True):
        assert feature.shape == (2, info["num_chs"], size // info["reduction"],
                                 (size + 16) // info["reduction"])
    assert [info["reduction"] for info in model.feature_info] == [
        model.feature_info[0]["reduction"] * 2**i for i in range(4)
    ]


def test_state_dict_round_trip_and_other_input_size(small_model):
    name, model = small_model
    model.eval()
    size = SMALL.get(name, 64)
    clone = _small_model(name).eval()
    clone.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x))
    bigger = create_model(name, img_size=size * 2, num_classes=7).eval()
    bigger.load_state_dict(model.state_dict())
    x2 = torch.randn(1, 3, size * 2, size * 2)
    with torch.no_grad():
        torch.testing.assert_close(bigger(x2), model(x2), rtol=1e-4, atol=1e-5)


def test_bad_inputs_name_the_expected_shape():
    model = create_model("dsm_micro")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="got 1 channels"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="H, W >= 16"):
        model(torch.randn(2, 3, 8, 32))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown token_mixer"):
        create_model("dsm_micro", token_mixer="fourier")


@pytest.mark.parametrize("mixer", sorted(TOKEN_MIXERS))
def test_same_body_with_every_mixer(mixer):
    model = create_model("dsm_micro", token_mixer=mixer)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    blocks = [m for m in model.modules() if type(m).__name__ == "DSMBlock"]
    assert len(blocks) == 5


def test_mixer_options_reach_every_mixer():
    model = create_model("dsm_micro", mixer_options={"spectrum_length": 2, "gate": "2sigmoid"})
    dswgs = [m.mixer.dswg for m in model.modules() if type(m).__name__ == "DSMBlock"]
    assert all(d.spectrum_length == 2 and d.gate == "2sigmoid" for d in dswgs)


def test_dynamic_and_static_models_start_equal():
    torch.manual_seed(0)
    dynamic = create_model("dsm_micro").eval()
    static = create_model("dsm_micro", token_mixer="static").eval()
    static.load_state_dict(dynamic.state_dict(), strict=False)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(dynamic(x), static(x))


def test_drop_path_schedule_and_layer_scale():
    model = create_model("dsm_nano", drop_path_rate=0.3, layer_scale_init=1e-4)
    rates = [m.p for m in model.modules() if type(m).__name__ == "DropPath"]
    assert rates == sorted(rates) and abs(max(rates) - 0.3) < 1e-6
    gammas = [p for n, p in model.named_parameters() if n.endswith("gamma")]
    assert gammas and all(torch.all(g == 1e-4) for g in gammas)


def test_weight_decay_groups_skip_spectral_weights_norms_and_biases():
    model = create_model("dsm_micro")
    decay, no_decay = weight_decay_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim > 1 and "spectral_weight" not in names[id(p)] for p in decay["params"])
    assert any("spectral_weight" in names[id(p)] for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_pre_logits_and_headless():
    model = create_model("dsm_micro", num_classes=0)
    features = model.forward_features(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 2, 2, 128)
    assert model.forward_head(features, pre_logits=True).shape == (2, 128)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 128)


def test_jit_trace_whole_model():
    model = create_model("dsm_micro").eval()
    _activate_dswgs(model)
    x = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (x,), check_trace=False)
    torch.testing.assert_close(traced(x), model(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_dsm_s_on_cuda_bf16_at_224_and_320x256():
    model = create_model("dsm_s").cuda()
    for shape in [(224, 224), (320, 256)]:
        x = torch.randn(2, 3, *shape, device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
        out.float().sum().backward()
        assert out.shape == (2, 1000) and torch.isfinite(out.float()).all()


def test_init_weights_works_on_a_mixer_built_alone():
    """The model's scheme on a mixer outside any model: linear layers N(0, 0.02^2) with zero
    bias, then the mixer's own init (spectral weight, the DSWG's zero last layer); the
    same seed gives the same values, another seed other values."""
    from dsm_ref.models import init_weights

    def built(seed):
        mixer = TOKEN_MIXERS["dsm"](64, (8, 8))
        with torch.no_grad():
            for p in mixer.parameters():
                p.fill_(7.0)  # whatever construction left behind must be overwritten
        init_weights(mixer, seed)
        return mixer

    mixer = built(3)
    assert abs(mixer.proj.weight.std().item() - 0.02) < 0.003
    assert not mixer.proj.bias.any()
    assert abs(mixer.spectral_weight.std().item() - 0.02) < 0.003
    assert not mixer.dswg.fc2.weight.any() and not mixer.dswg.fc2.bias.any()
    same, other = built(3), built(4)
    for (name, a), b in zip(mixer.state_dict().items(), same.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(mixer.proj.weight, other.proj.weight)
