"""dsm_ref.ablation's dense studies at a toy size on the spectral regions (no files needed): paired
starts, the record's statistics against scipy, the pretraining run, resume, the command line and
bad names. The detection variant runs on the CIFAR-10 mosaics where the course's copy is."""

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest
import torch
from conftest import needs_shared_cifar
from scipy import stats

from dsm_ref import ablation
from dsm_ref.ablation.run import run_path
from dsm_ref.cli import main as cli
from dsm_ref.models import EXECUTION_OPTIONS
from dsm_ref.train import build_model, train
from dsm_ref.utils import seed_everything

DATA = "spectral-regions"
BODY = {"dims": (8, 16, 24, 32), "stem_stride": 4, "neck_channels": 16, "head_channels": 16}
# 48-px canvases: a pretraining run at 32 px loads with its spectral weights resized.
TOY = ablation.Budget(epochs=1, n_train=16, n_test=8, batch_size=8, img_size=48,
                      model_options=BODY)
PRETRAINING = ablation.Pretraining(epochs=1, n_train=64, n_test=16, batch_size=16)
MIXERS = ablation.DENSE_STUDIES["dense_mixers"]
PRETRAINED = ablation.DENSE_STUDIES["pretrained"]


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("dense")


@pytest.fixture(scope="module")
def mixers(toy_dir):
    return ablation.run_study("dense_mixers", DATA, seeds=2, budget=TOY, out=toy_dir,
                              progress=False)


@pytest.fixture(scope="module")
def pretrained(toy_dir, mixers):
    return ablation.run_study("pretrained", DATA, seeds=2, budget=TOY, out=toy_dir,
                              progress=False, pretraining=PRETRAINING)


def _initial_state(arm, seed, task="segment", pretrained_path=None):
    """The dense model a run of ``arm`` starts from, built as the trainer builds it."""
    data = DATA if task == "segment" else "mosaic-detect"
    config = ablation.arm_config(arm, data, seed, TOY, pretrained_path=pretrained_path)
    seed_everything(seed)
    return build_model(config, 3 if task == "segment" else 11, TOY.img_size).state_dict()


@pytest.mark.parametrize("task", ["segment", "detect"])
def test_dense_arms_share_every_common_parameter_at_init(task):
    """Paired starts: at one seed, every arm's dense model holds the reference's values in every
    entry they share (the stem, norms, MLPs, the FPN and the head); only the mixers differ. The
    head really is drawn from the seed (another seed gives other values)."""
    states = {arm.name: _initial_state(arm, 3, task) for arm in MIXERS.arms}
    reference = states[MIXERS.reference]
    head = [k for k in reference if not k.startswith("backbone.body")]
    assert len(head) > 20
    for name, state in states.items():
        shared = [k for k in state if k in reference and state[k].shape == reference[k].shape]
        assert set(head) <= set(shared) and len(shared) >= 100, (task, name)
        differ = [k for k in shared if not torch.equal(state[k], reference[k])]
        assert not differ, (task, name, differ[:3])
    other_seed = _initial_state(MIXERS.arm("DSM"), 4, task)
    drawn = [k for k in head if reference[k].unique().numel() > 1]  # not a constant
    assert drawn and all(not torch.equal(reference[k], other_seed[k]) for k in drawn)


def test_the_pretrained_arm_shares_the_head_and_loads_the_backbone(pretrained, toy_dir):
    """The pretrained arm starts from the scratch arm's head (same seed, same draws) and from the
    pretraining run's backbone, its spectral weights resized from 32 px to the canvases."""
    arm = dataclasses.replace(PRETRAINED.arm("pretrained"), pretrain=PRETRAINING)
    weights = ablation.pretrained_weights_path(toy_dir, DATA, arm, TOY)
    start = _initial_state(arm, 1, pretrained_path=weights)
    scratch = _initial_state(PRETRAINED.arm("scratch"), 1)
    assert sorted(start) == sorted(scratch)
    checkpoint = torch.load(weights, weights_only=True)
    resized = 0
    for key, value in start.items():
        if not key.startswith("backbone.body."):
            assert torch.equal(value, scratch[key]), key
            continue
        stored = checkpoint[key.removeprefix("backbone.body.")].float()
        assert value.shape == scratch[key].shape
        if value.shape != stored.shape:
            assert key.endswith("spectral_weight"), key
            resized += 1
        else:
            torch.testing.assert_close(value, stored, rtol=0, atol=0)
    assert resized >= 3
    # The classification run is stored as a run of its own, beside the study's.
    pre = json.loads(json.dumps(pretrained["pretraining"][0]))
    assert pre["dataset"] == "spectral" and toy_dir / pre["weights"] == weights
    assert pre["budget"]["model_options"] == {"dims": [8, 16, 24, 32], "stem_stride": 4}
    stored_run = json.loads((toy_dir / pre["run"]).read_text())
    assert stored_run["test_top1"] == pre["test_top1"]
    assert stored_run["config"]["task"] == "classify"
    for run in pretrained["arms"][1]["runs"]:
        assert run["config"]["model_options"]["pretrained_path"] == str(weights)
    # The scratch arm is the mixers study's DSM arm: one run configuration, trained once.
    for seed in (0, 1):
        assert run_path(toy_dir, DATA, PRETRAINED.arm("scratch"), TOY, seed) == run_path(
            toy_dir, DATA, MIXERS.arm("DSM"), TOY, seed)
    assert pretrained["runs_trained_now"] == 1 + 2  # the pretraining and the pretrained arm


def test_the_record_holds_the_metrics_and_what_the_runs_scored(mixers, toy_dir):
    stored = ablation.load_study(toy_dir / f"dense_mixers-{DATA}.json")
    assert stored == json.loads(json.dumps(mixers))
    assert (mixers["task"], mixers["metric"]) == ("segment", "test_miou")
    assert [a["name"] for a in mixers["arms"]] == [a.name for a in MIXERS.arms]
    assert list(mixers["secondary_paired_differences"]) == ["test_pixel_accuracy"]
    for arm in mixers["arms"]:
        assert arm["cost"]["params"] > 0 and arm["test_miou"]["n"] == 2
        for run in arm["runs"]:
            assert 0 <= run["baseline_test_miou"] <= run["test_pixel_accuracy"] <= 100
            # The per-class IoUs are the trainer's mIoU, class by class.
            present = [v for v in run["test_iou_per_class"].values() if v is not None]
            assert set(run["test_iou_per_class"]) == {"low", "middle", "high"}
            assert math.isclose(np.mean(present), run["test_miou"], rel_tol=1e-5)
            assert run["test_miou_per_epoch"][-1] == run["test_miou"]
    quality = mixers["quality"]
    assert quality["margin"] == ablation.QUALITY_MARGIN["segment"] and quality["runs"] == 10
    assert {(b["arm"], b["seed"]) for b in quality["below_floor"]} == {
        (a["name"], r["seed"]) for a in mixers["arms"] for r in a["runs"]
        if r["test_miou"] < r["baseline_test_miou"] + quality["margin"]}


@pytest.mark.parametrize("metric", ["test_miou", "test_pixel_accuracy"])
def test_paired_statistics_are_scipys(mixers, metric):
    """Each arm minus DSM by seed, its t-interval and paired t-test (scipy), Holm over the four
    comparisons by hand, and the verdicts, as the record and its tables state them."""
    runs = {a["name"]: {r["seed"]: r[metric] for r in a["runs"]} for a in mixers["arms"]}
    rows = (mixers["paired_differences"] if metric == "test_miou"
            else mixers["secondary_paired_differences"][metric])
    assert [r["arm"] for r in rows] == [a.name for a in MIXERS.arms[1:]]
    p_values = []
    for row in rows:
        arm, ref = runs[row["arm"]], runs["DSM"]
        diffs = [arm[s] - ref[s] for s in (0, 1)]
        assert row["diffs"] == pytest.approx(diffs, abs=1e-12)
        assert row["mean"] == pytest.approx(np.mean(diffs), abs=1e-12)
        if np.std(diffs) > 0:
            low, high = stats.t.interval(0.95, 1, loc=np.mean(diffs),
                                         scale=stats.sem(diffs))
            assert row["ci95"] == pytest.approx([low, high])
            p = stats.ttest_rel([arm[0], arm[1]], [ref[0], ref[1]]).pvalue
            assert row["p"] == pytest.approx(p)
        p_values.append(row["p"])
    order = np.argsort(p_values, kind="stable")
    holm, running = [None] * len(p_values), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - k) * p_values[i]))
        holm[i] = running
    for row, expected in zip(rows, holm, strict=True):
        assert row["p_holm"] == pytest.approx(expected)
        shown = expected < 0.05 and np.sign(row["mean"]) != 0
        assert row["verdict"] == ("not shown" if not shown else
                                  "supported" if np.sign(row["mean"]) == -1 else "contradicted")
    table = ablation.study_table(mixers, metric)
    for row in rows:
        assert f"{row['mean']:+.2f} [{row['ci95'][0]:+.2f}, {row['ci95'][1]:+.2f}]" in table


def test_the_markdown_report_is_written_beside_the_record(mixers, toy_dir):
    text = (toy_dir / f"dense_mixers-{DATA}.md").read_text()
    assert text.startswith(f"# dense_mixers on {DATA} (spectral-regions)")
    assert "## mIoU" in text and "## pixel acc." in text and "quality floor:" in text
    for arm in mixers["arms"]:
        assert f"| {arm['name']} | {arm['test_miou']['mean']:.2f} +- " in text
    for row in mixers["paired_differences"]:
        assert ablation.verdict(mixers, row["arm"]) in text


def test_resume_skips_finished_runs(mixers, toy_dir):
    run_path(toy_dir, DATA, MIXERS.arm("static twin"), TOY, 1).unlink()  # as if killed
    again = ablation.run_study("dense_mixers", DATA, seeds=2, budget=TOY, out=toy_dir,
                               progress=False)
    assert again["runs_trained_now"] == 1
    assert [a["test_miou"] for a in again["arms"]] == [a["test_miou"] for a in mixers["arms"]]


def test_a_killed_dense_run_resumes_from_its_checkpoint(tmp_path):
    arm = MIXERS.arm("DSM")
    budget = dataclasses.replace(TOY, epochs=2)
    work = tmp_path / "work"
    config = ablation.arm_config(arm, DATA, 0, budget, work_dir=work)
    assert train(dataclasses.replace(config, max_steps=3)).interrupted
    resumed = ablation.run_arm(arm, DATA, 0, budget, work_dir=work)
    fresh = ablation.run_arm(arm, DATA, 0, budget)
    assert resumed["test_iou_per_class"] == fresh["test_iou_per_class"]
    assert resumed["train_loss"] == pytest.approx(fresh["train_loss"], rel=1e-6)
    assert not work.exists()


def test_new_budget_fields_at_their_defaults_keep_the_stored_run_keys():
    """Runs stored before ``img_size`` and ``model_options`` existed are still found."""
    arm = ablation.STUDIES["mixers"].arm("DSM")
    budget = ablation.Budget(epochs=6, n_train=10000, n_test=10000, batch_size=64)
    mixer = {key: value for key, value in
             ablation.studies.mixer_options("dsm", {"dct_method": "matmul"}).items()
             if key not in EXECUTION_OPTIONS}  # options that came later and compute the same
    old = {"model_options": {**arm.model_options, "mixer_options": mixer}, "data": "cifar10",
        "budget": {k: v for k, v in dataclasses.asdict(budget).items()
                   if k not in ("img_size", "model_options")}}
    text = json.dumps(old, sort_keys=True, default=repr)
    assert arm.key(budget, "cifar10") == hashlib.sha1(text.encode()).hexdigest()[:12]
    assert arm.key(dataclasses.replace(budget, img_size=32), "cifar10") != arm.key(budget,
                                                                                   "cifar10")
    pre = dataclasses.replace(arm, pretrain=ablation.Pretraining())
    assert pre.key(TOY, DATA) != arm.key(TOY, DATA)


def test_bad_study_and_data_names_say_what_exists():
    with pytest.raises(ValueError, match="unknown study 'dense'; expected one of: "
                                         "dynamic_vs_static.*dense_mixers, pretrained"):
        ablation.find_study("dense")
    with pytest.raises(ValueError, match="unknown data 'ade20k'; expected one of: .*"
                                         "mosaic-segment, mosaic-detect, spectral-regions"):
        ablation.run_study("dense_mixers", "ade20k", budget=TOY, progress=False)
    with pytest.raises(ValueError, match="study 'dense_mixers' is for segment/detect data; "
                                         "'cifar10' is classify data; expected one of: "
                                         "mosaic-segment, mosaic-detect, spectral-regions"):
        ablation.run_study("dense_mixers", "cifar10", progress=False)
    with pytest.raises(ValueError, match="study 'mixers' is for classify data"):
        ablation.run_study("mixers", "mosaic-segment/cifar10", progress=False)
    with pytest.raises(ValueError, match="starts from a pretraining run"):
        ablation.run_arm(PRETRAINED.arm("pretrained"), DATA, 0, TOY)
    assert ablation.data_key("mosaic-segment/cifar10") == "mosaic-segment"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--study", "dense_mixers", "--data", "cifar10"],
         "study 'dense_mixers' is for segment/detect data, not 'cifar10' (classify); pass "
         "--data one of: mosaic-segment, mosaic-detect, spectral-regions"),
        (["--study", "dense-mixers"], "unknown study 'dense-mixers'; expected one of: "),
        (["--data", "ade20k"], "unknown data 'ade20k'; expected one of: cifar10, spectral, "
                               "distractors, both, mosaic-segment, mosaic-detect"),
        (["--data", "mosaic-segment", "--model-options", "[1]"],
         "--model-options takes a JSON object"),
        (["--data", "mosaic-segment", "--curve", "32x1"], "--curve runs classification arms"),
    ],
)
def test_cli_bad_names_list_the_valid_ones(argv, message, capsys, tmp_path):
    assert cli(["ablate", *argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_cli_runs_a_dense_study_from_the_cache(mixers, toy_dir, capsys):
    argv = ["ablate", "--study", "dense_mixers", "--data", "spectral-regions", "--seeds", "2",
            "--epochs", "1", "--n-train", "16", "--n-test", "8", "--batch-size", "8",
            "--lr", str(TOY.lr), "--img-size", "48", "--model-options", json.dumps(BODY),
            "--out", str(toy_dir)]
    assert cli(argv) == 0
    table = capsys.readouterr().out
    assert "on spectral-regions (2 seeds, 1 epochs, 16 train canvases at 48 px" in table
    assert "mIoU %" in table and "pixel acc. %" in table
    record = ablation.load_study(toy_dir / f"dense_mixers-{DATA}.json")
    assert record["runs_trained_now"] == 0  # every run was in the cache


def test_default_budgets():
    assert ablation.default_budget("mosaic-detect").lr == 2e-4  # 2e-3 diverges
    assert ablation.default_budget("cifar10") == ablation.Budget()
    segment = ablation.default_budget("mosaic-segment/cifar10")
    assert segment.img_size == 64 and segment.model_options["stem_stride"] == 4


@needs_shared_cifar
def test_the_detection_variant_reports_map_and_map50(tmp_path):
    study = ablation.Study("dense_pair", "", "", MIXERS.arms[:2], "DSM", MIXERS.tasks)
    budget = ablation.Budget(epochs=1, n_train=8, n_test=4, batch_size=4, lr=2e-4, img_size=32,
                             model_options={**BODY, "stem_stride": 2})
    record = ablation.run_study(study, "mosaic-detect", seeds=1, budget=budget, out=tmp_path,
                                progress=False)
    assert (record["task"], record["metric"]) == ("detect", "test_map")
    assert list(record["secondary_paired_differences"]) == ["test_map_50"]
    run = record["arms"][0]["runs"][0]
    assert run["baseline_test_map"] == 0.0 and run["num_classes"] == 11
    assert 0 < len(run["test_ap_per_class"]) <= 10 and "background" not in run[
        "test_ap_per_class"]
    assert "mAP@50 %" in ablation.study_table(record)
    assert run_path(tmp_path, "mosaic-detect", MIXERS.arms[0], budget, 0).exists()
