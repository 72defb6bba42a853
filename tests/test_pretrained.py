"""Shipped weights: the weights file format, ``create_model(..., pretrained=True)``, the export of
a finished run, and (when they are in the package) the shipped dsm_micro weights themselves."""

import json
from pathlib import Path

import pytest
import torch
from conftest import needs_shared_cifar

from dsm_ref import pretrained as P
from dsm_ref.cli import main
from dsm_ref.dswg import DESCRIPTORS
from dsm_ref.models import create_model, mixer_options, spelled_out_options
from dsm_ref.train.export import export_run

PREPROCESS = {"img_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
CLASSES = [str(k) for k in range(10)]


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch):
    """The package's weights folder moved to ``tmp_path``, holding a random dsm_micro's weights."""
    torch.manual_seed(0)
    model = create_model("dsm_micro")
    P.save_weights(model.state_dict(), tmp_path / "dsm_micro-cifar10.pt", model="dsm_micro",
                   model_options={}, preprocess=PREPROCESS, classes=CLASSES)
    monkeypatch.setattr(P, "WEIGHTS_DIR", tmp_path)
    return tmp_path, model


def test_a_variant_without_weights_names_those_that_have_some():
    with pytest.raises(P.WeightsError, match=r"no trained weights for 'dsm_nano'.*\['dsm_micro'\]"):
        create_model("dsm_nano", pretrained=True)


def test_missing_package_data_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "WEIGHTS_DIR", tmp_path)
    assert P.pretrained_models() == []
    with pytest.raises(P.WeightsError, match="not in this copy of dsm_ref"):
        create_model("dsm_micro", pretrained=True)


def test_pretrained_loads_the_float16_weights_as_float32(shipped_dir):
    folder, source = shipped_dir
    assert P.pretrained_models() == ["dsm_micro"]
    model = create_model("dsm_micro", pretrained=True)
    for key, value in model.state_dict().items():
        expected = source.state_dict()[key]
        assert value.dtype == expected.dtype, key
        if expected.is_floating_point():  # exactly the float16 rounding of the source
            assert torch.equal(value, expected.half().float()), key
    info = P.weights_info("dsm_micro")
    assert info["preprocess"] == PREPROCESS and info["classes"] == CLASSES
    assert (folder / "dsm_micro-cifar10.pt").stat().st_size < 2e6


def test_pretrained_with_shape_changing_options_is_refused(shipped_dir):
    with pytest.raises(P.WeightsError, match=r"do not fit.*num_classes.*head\.weight: stored "
                                             r"\(10, 128\), model \(5, 128\)"):
        create_model("dsm_micro", pretrained=True, num_classes=5)
    create_model("dsm_micro", pretrained=True, drop_path_rate=0.1)  # no shape changes: loads


def test_model_from_weights_builds_the_stored_variant_with_its_options(tmp_path):
    torch.manual_seed(0)
    source = create_model("dsm_micro", num_classes=5)
    P.save_weights(source.state_dict(), tmp_path / "five.pt", model="dsm_micro",
                   model_options={"num_classes": 5}, preprocess=PREPROCESS, classes=CLASSES[:5])
    model = P.model_from_weights(tmp_path / "five.pt")
    assert model.head.weight.shape == (5, 128)
    for key, value in model.state_dict().items():
        expected = source.state_dict()[key]
        assert torch.equal(value, expected.half().float() if expected.is_floating_point()
                           else expected), key
    (tmp_path / "bad.pt").write_bytes(b"not a weights file")
    with pytest.raises(P.WeightsError):
        P.model_from_weights(tmp_path / "bad.pt")


def test_pretrained_builds_the_model_the_weights_were_trained_as(tmp_path, monkeypatch):
    """The options stored with the weights decide the model, not today's defaults: weights of a
    DSWG with another descriptor (and a static filter start) load into that DSWG, overrides on
    top; another mixer drops the stored mixer options and its shapes are refused."""
    torch.manual_seed(0)
    options = spelled_out_options({"mixer_options": {"descriptor": "log_of_mean",
                                                     "static_init": "ones"}})
    source = create_model("dsm_micro", **options)
    P.save_weights(source.state_dict(), tmp_path / "dsm_micro-cifar10.pt", model="dsm_micro",
                   model_options=options, preprocess=PREPROCESS, classes=CLASSES)
    monkeypatch.setattr(P, "WEIGHTS_DIR", tmp_path)
    model = create_model("dsm_micro", pretrained=True,
                         mixer_options={"gate": "softmax", "pool": "max"})
    dswg = model.stages[0].blocks[0].mixer.dswg
    assert (dswg.descriptor, dswg.pool) == ("log_of_mean", "max")
    assert model.stages[0].blocks[0].mixer.static_init == "ones"
    with pytest.raises(P.WeightsError, match="do not fit"):
        create_model("dsm_micro", pretrained=True, token_mixer="gfnet")


def test_spelled_out_options_name_every_mixer_option():
    options = spelled_out_options({"num_classes": 5, "mixer_options": {"num_groups": 2}})
    assert options["num_classes"] == 5 and options["token_mixer"] == "dsm"
    assert options["mixer_options"] == mixer_options("dsm", {"num_groups": 2})
    assert options["mixer_options"]["descriptor"] in DESCRIPTORS
    assert spelled_out_options({"token_mixer": "identity"})["mixer_options"] == {}
    with pytest.raises(ValueError, match="unknown option 'descriptor' of token_mixer 'attention"):
        spelled_out_options({"token_mixer": "attention", "mixer_options": {"descriptor": "log"}})


def test_the_kept_weights_of_the_earlier_recipe_match_their_record():
    """data/weights/ keeps the weights the package shipped before, for notebook 05's paired
    comparison of the two recipes on the same test images."""
    path = Path(__file__).resolve().parents[1] / "data" / "weights" / "dsm_micro-cifar10-long.pt"
    record = json.loads(path.with_suffix(".json").read_text())
    assert P.read_weights(path)["sha256"] == record["sha256"]
    assert record["size_bytes"] == path.stat().st_size
    assert record["config"]["epochs"] == len(record["history"]) and not record["config"]["mixup"]
    assert P.model_from_weights(path).head.weight.shape == (10, 128)


def test_damaged_foreign_and_truncated_files_are_refused(shipped_dir, tmp_path):
    folder, _ = shipped_dir
    path = folder / "dsm_micro-cifar10.pt"
    stored = torch.load(path, weights_only=True)
    stored["state_dict"]["head.bias"][0] += 1
    torch.save(stored, path)
    with pytest.raises(P.WeightsError, match="damaged"):
        create_model("dsm_micro", pretrained=True)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(P.WeightsError, match="truncated or corrupt"):
        P.read_weights(path)
    torch.save({"model": {}}, path)
    with pytest.raises(P.WeightsError, match="not a dsm_ref weights file"):
        P.read_weights(path)


def _spectral_run(out, epochs=2, extra=()):
    argv = ["train", "--data", "spectral", "--n-train", "32", "--n-test", "16", "--batch-size",
            "16", "--epochs", str(epochs), "--threads", "1", "--out", str(out), "--no-progress",
            *extra]
    assert main(argv) == 0


def test_export_writes_small_weights_and_a_record_that_reproduces_the_run(tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "weights"
    _spectral_run(run)
    assert main(["export", str(run), "--out", str(out), "--name", "toy"]) == 0
    assert "wrote" in capsys.readouterr().out
    record = json.loads((out / "toy.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert record["command"] == metrics["command"] and record["history"] == metrics["history"]
    assert record["size_bytes"] == (out / "toy.pt").stat().st_size
    assert record["sha256"] == P.read_weights(out / "toy.pt")["sha256"]
    assert record["shipped_test"]["count"] == 16
    # float16 rounding moves a logit by ~1e-3 relative: at most one of 16 predictions may flip
    assert abs(record["shipped_test"]["top1"] - metrics["final"]["test_top1"]) <= 100 / 16
    assert record["preprocess"]["img_size"] == 32 and len(record["classes"]) == 8
    # the DSWG's form is spelled out: a later change of a default keeps these weights' model
    assert record["model_options"] == spelled_out_options({})
    assert P.read_weights(out / "toy.pt")["model_options"] == record["model_options"]


def test_export_of_a_resumed_run_records_its_first_command_and_every_session(tmp_path):
    run, out = tmp_path / "run", tmp_path / "weights"
    _spectral_run(run, epochs=2, extra=["--max-steps", "3"])
    _spectral_run(run, epochs=2, extra=["--resume"])
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    record = export_run(run, out, stem="toy")
    assert [s["epochs"] for s in record["sessions"]] == [[1], [2]]  # 2 steps per epoch
    assert "--resume" in record["sessions"][1]["command"]
    assert record["command"] == rows[0]["command"] and "--max-steps" in record["command"]
    assert record["wall_time_s"] == pytest.approx(
        sum(row["wall_time_s"] for row in rows if row["event"] == "end"), abs=0.01)
    assert record["wall_time_s"] > json.loads((run / "metrics.json").read_text())["wall_time_s"]


def test_export_refuses_an_unfinished_run(tmp_path):
    run = tmp_path / "run"
    _spectral_run(run, epochs=3, extra=["--max-steps", "2"])
    with pytest.raises(ValueError, match="stopped after .* epochs: resume it"):
        export_run(run, tmp_path / "weights")
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        export_run(tmp_path / "nothing", tmp_path / "weights")


# --- the weights shipped in the package ----------------------------------------------------------

# The goal for these weights is 85 % top-1 on CIFAR-10's test set; the shipped MixUp/CutMix run
# reached 85.98 % (data/README.md). The floor is the goal: weights that fall short of it, or
# untrained or damaged ones, fail here.
SHIPPED_TOP1_FLOOR = 85.0

shipped = pytest.mark.skipif("dsm_micro" not in P.pretrained_models(),
                             reason="dsm_micro's trained weights are not in this checkout yet")


@shipped
def test_shipped_weights_are_small_and_match_their_record():
    path = P.weights_path("dsm_micro")
    record = json.loads(path.with_suffix(".json").read_text())
    assert path.stat().st_size < 2e6 and record["size_bytes"] == path.stat().st_size
    assert P.read_weights(path)["sha256"] == record["sha256"]
    assert record["shipped_test"]["count"] == 10_000
    assert record["shipped_test"]["top1"] >= SHIPPED_TOP1_FLOOR


@shipped
@needs_shared_cifar
def test_shipped_dsm_micro_scores_its_recorded_accuracy_on_cifar10():
    from dsm_ref.data import load_cifar10
    from dsm_ref.train import evaluate

    model = create_model("dsm_micro", pretrained=True)
    test = load_cifar10(augment=False, progress=False).test
    scores = evaluate(model, test, batch_size=500, device="cpu")
    record = json.loads(P.weights_path("dsm_micro").with_suffix(".json").read_text())
    assert scores["count"] == 10_000
    assert scores["top1"] >= SHIPPED_TOP1_FLOOR
    # another CPU rounds the last bits of a logit differently: a near-tie may flip (0.01 each)
    assert abs(scores["top1"] - record["shipped_test"]["top1"]) <= 0.05


def test_export_refuses_a_run_whose_checkpoint_is_behind_its_metrics(tmp_path):
    """A resume with fewer epochs than planned writes a 'finished' metrics.json; the checkpoint
    still says how far the planned run got, and export trusts it."""
    run = tmp_path / "run"
    _spectral_run(run, epochs=3, extra=["--max-steps", "2"])
    _spectral_run(run, epochs=1, extra=["--resume"])
    with pytest.raises(ValueError, match="is at epoch 1 .* of the 3 its run planned"):
        export_run(run, tmp_path / "weights")
