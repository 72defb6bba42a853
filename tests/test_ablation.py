"""dsm_ref.ablation: every study end to end at a toy size, the JSON schema, resume, bad names."""

import json
from functools import partial
from pathlib import Path

import pytest

from dsm_ref import ablation, create_model
from dsm_ref.ablation.run import run_path
from dsm_ref.ablation.sharing import _claim
from dsm_ref.cli import main as cli
from dsm_ref.dswg import DESCRIPTORS
from dsm_ref.mixers import DynamicSpectrumMixer
from dsm_ref.models import EXECUTION_OPTIONS, TOKEN_MIXERS, mixer_options

TOY = ablation.Budget(epochs=1, n_train=32, n_test=16, batch_size=16)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ablation")


@pytest.mark.parametrize("study", list(ablation.STUDIES))
def test_every_study_runs_end_to_end_and_writes_its_record(study, toy_dir):
    record = ablation.run_study(study, "spectral", seeds=1, budget=TOY, out=toy_dir,
                                progress=False)
    stored = ablation.load_study(toy_dir / f"{study}-spectral.json")
    assert stored == json.loads(json.dumps(record))
    names = [arm.name for arm in ablation.STUDIES[study].arms]
    assert [arm["name"] for arm in record["arms"]] == names
    for arm in record["arms"]:
        assert [run["seed"] for run in arm["runs"]] == [0]
        assert all(0 <= run["test_top1"] <= 100 for run in arm["runs"])
        assert arm["test_top1"]["n"] == 1 and arm["cost"]["params"] > 0
    assert {p["arm"] for p in record["paired_differences"]} == set(names) - {record["reference"]}
    for key in ("command", "git", "device", "environment"):
        assert key in record["provenance"]


def test_cost_counts_the_dswg():
    study = ablation.STUDIES["spectrum_length"]
    costs = {arm.name: ablation.arm_cost(arm, TOY) for arm in study.arms}
    dswg_params = [costs[name]["dswg_params"] for name in ("L=1", "L=4", "L=full")]
    assert dswg_params == sorted(set(dswg_params))
    assert all(c["dswg_macs"] > 0 for c in costs.values())
    static = ablation.arm_cost(ablation.STUDIES["dynamic_vs_static"].arm("static"), TOY)
    assert static["dswg_params"] == 0 and static["dswg_macs"] == 0


def test_resume_reuses_finished_runs(tmp_path):
    first = ablation.run_study("dynamic_vs_static", "spectral", seeds=2, budget=TOY,
                               out=tmp_path, progress=False)
    assert first["runs_trained_now"] == 6  # 3 arms x 2 seeds
    runs = sorted((tmp_path / "runs" / "spectral").glob("*.json"))
    runs[0].unlink()  # as if the study had been killed before its last run
    again = ablation.run_study("dynamic_vs_static", "spectral", seeds=2, budget=TOY,
                               out=tmp_path, progress=False)
    assert again["runs_trained_now"] == 1
    assert [a["test_top1"] for a in again["arms"]] == [a["test_top1"] for a in first["arms"]]


def test_runs_are_deterministic_per_seed(tmp_path):
    arm = ablation.STUDIES["dynamic_vs_static"].arm("dynamic")
    a = ablation.run_arm(arm, "spectral", 3, TOY)
    b = ablation.run_arm(arm, "spectral", 3, TOY)
    assert a["test_top1"] == b["test_top1"] and a["train_loss"] == b["train_loss"]


def test_study_table_and_verdict(toy_dir):
    record = ablation.load_study(toy_dir / "dynamic_vs_static-spectral.json")
    table = ablation.study_table(record)
    assert "dynamic" in table and "reference" in table and "Holm p" in table
    one_seed = ablation.verdict(record, "dynamic")
    assert one_seed.startswith("dynamic - static on spectral: ")
    assert one_seed.endswith("-> not shown (claim: better than static)")

    def with_diffs(dynamic, control):
        return {**record, "paired_differences": [
            {"arm": "dynamic", "minus": "static", "diffs": dynamic},
            {"arm": "L=1 (A/A control)", "minus": "static", "diffs": control}]}

    # Clear gains survive Holm's correction over the study's two comparisons ...
    supported = with_diffs([3.0, 2.5, 3.5, 3.2, 2.8], [0.0] * 5)
    assert ablation.verdict(supported, "dynamic").endswith("-> supported (claim: better than "
                                                           "static)")
    assert ablation.verdict(supported, "L=1 (A/A control)").endswith(
        "-> no verdict (no directional claim)")
    # ... a significant loss contradicts the claim, and noise shows nothing.
    assert "-> contradicted" in ablation.verdict(with_diffs([-3.0, -2.5, -3.5], [0.0] * 3),
                                                 "dynamic")
    assert "-> not shown" in ablation.verdict(with_diffs([2.0, -1.0, 0.5], [0.0] * 3), "dynamic")
    stats = ablation.with_statistics(supported)["paired_differences"][0]
    low, high = stats["ci95"]
    assert low < stats["mean"] < high and stats["p_holm"] >= stats["p"]


def test_arms_share_every_common_parameter_at_init():
    """Paired starts: at one seed, the arms of every study hold identical values in each
    parameter they share (same name and shape); only the initialisation study's spectral
    weights, the thing it varies, differ."""
    import torch

    for study in ablation.STUDIES.values():
        states = {}
        for arm in study.arms:
            torch.manual_seed(0)
            states[arm.name] = create_model("dsm_micro", **arm.model_options).state_dict()
        reference = states[study.reference]
        for name, state in states.items():
            shared = [k for k in state if k in reference and state[k].shape == reference[k].shape]
            assert len(shared) >= 60, (study.name, name)
            differ = {k for k in shared if not torch.equal(state[k], reference[k])}
            if study.name == "init" and name.endswith("ones"):
                assert differ and all(k.endswith("spectral_weight") for k in differ)
            else:
                assert not differ, (study.name, name, sorted(differ)[:3])


def test_a_a_control_trains_exactly_like_the_static_arm():
    """``L = 1`` gives every coefficient the weight 1: the static mixer's function. With paired
    starts it gives the static arm's outputs and training curve, up to float rounding (the
    weighted spectrum takes another memory layout through the inverse DCT)."""
    import torch

    study = ablation.STUDIES["dynamic_vs_static"]
    models = {}
    for name in ("L=1 (A/A control)", "static"):
        torch.manual_seed(3)
        models[name] = create_model("dsm_micro", **study.arm(name).model_options)
    images = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(models["L=1 (A/A control)"](images), models["static"](images),
                               rtol=1e-6, atol=1e-7)
    budget = ablation.Budget(epochs=2, n_train=64, n_test=32, batch_size=16)
    control = ablation.run_arm(study.arm("L=1 (A/A control)"), "spectral", 1, budget)
    static = ablation.run_arm(study.arm("static"), "spectral", 1, budget)
    dynamic = ablation.run_arm(study.arm("dynamic"), "spectral", 1, budget)
    assert control["test_top1_per_epoch"] == static["test_top1_per_epoch"]
    assert control["test_predictions"] == static["test_predictions"]
    assert control["train_loss"] == pytest.approx(static["train_loss"], rel=1e-6)
    # The check can fail: the default DSWG moves the loss beyond rounding (by ~5e-6 here).
    assert dynamic["train_loss"] != pytest.approx(static["train_loss"], rel=1e-6)


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path):
    """A run stopped after a few steps (as if killed) continues from its last checkpoint in its
    work folder and ends where an uninterrupted run ends; the folder is removed afterwards."""
    import dataclasses

    from dsm_ref.train import train

    arm = ablation.STUDIES["dynamic_vs_static"].arm("dynamic")
    budget = ablation.Budget(epochs=2, n_train=64, n_test=32, batch_size=16)
    work = tmp_path / "work"
    config = ablation.arm_config(arm, "spectral", 0, budget, work_dir=work)
    partial_run = train(dataclasses.replace(config, max_steps=5))
    assert partial_run.interrupted and (work / "checkpoint.pt").exists()
    resumed = ablation.run_arm(arm, "spectral", 0, budget, work_dir=work,
                               weights_path=tmp_path / "w.pt")
    fresh = ablation.run_arm(arm, "spectral", 0, budget)
    assert resumed["test_predictions"] == fresh["test_predictions"]
    assert resumed["train_loss"] == pytest.approx(fresh["train_loss"], rel=1e-6)
    assert not work.exists()
    model = ablation.load_weights(create_model("dsm_micro", num_classes=8),
                                  tmp_path / "w.pt")
    assert next(model.parameters()).dtype.is_floating_point


def test_runs_record_provenance_and_predictions(tmp_path):
    record = ablation.run_study("dynamic_vs_static", "spectral", seeds=1, budget=TOY,
                                out=tmp_path, progress=False, save_weights_for_seeds=(0,))
    assert len(list((tmp_path / "weights" / "spectral").glob("*-seed0.pt"))) == 3
    assert not list((tmp_path / "work").rglob("*.pt"))  # work folders are cleaned up
    run = record["arms"][0]["runs"][0]
    predictions = ablation.decode_predictions(run["test_predictions"])
    assert predictions.shape == (TOY.n_test,) and int(predictions.max()) < 8
    for key in ("git", "cpu_model", "torch_threads", "date", "data_source", "command"):
        assert key in run["provenance"], key
    assert set(run["provenance"]["git"]) == {"commit", "dirty", "diff_sha256"}


def test_load_study_rejects_foreign_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"schema": "other"}')
    with pytest.raises(ValueError, match="not a dsm_ref.ablation/v1 record"):
        ablation.load_study(path)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--study", "depth"],
         "unknown study 'depth'; expected one of: dynamic_vs_static, dswg_form"),
        (["--data", "imagenet"],
         "unknown data 'imagenet'; expected one of: cifar10, spectral, distractors, both"),
        (["--seeds", "0"], "--seeds must be >= 1"),
    ],
)
def test_cli_bad_names_list_the_valid_ones(argv, message, capsys, tmp_path):
    assert cli(["ablate", *argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_cli_writes_json(tmp_path, capsys):
    argv = ["ablate", "--study", "dynamic_vs_static", "--data", "spectral", "--seeds", "1",
            "--epochs", "1", "--n-train", "32", "--n-test", "16", "--batch-size", "16",
            "--out", str(tmp_path), "--json"]
    assert cli(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["study"] == "dynamic_vs_static"
    assert (tmp_path / "dynamic_vs_static-spectral.json").exists()


def test_run_key_names_the_model_with_its_defaults(monkeypatch):
    budget = ablation.Budget()
    studies = ablation.STUDIES
    dynamic = studies["dynamic_vs_static"].arm("dynamic").key(budget, "cifar10")
    assert studies["spectrum_length"].arm("L=4").key(budget, "cifar10") == dynamic
    assert studies["init"].arm("dynamic, random").key(budget, "cifar10") == dynamic
    static = studies["dynamic_vs_static"].arm("static").key(budget, "cifar10")
    assert studies["init"].arm("static, random").key(budget, "cifar10") == static
    # A real difference (option, mixer, dataset or budget) still gives a different run.
    others = {
        studies["spectrum_length"].arm("L=8").key(budget, "cifar10"),
        studies["init"].arm("dynamic, ones").key(budget, "cifar10"),
        dynamic, static,
        studies["dynamic_vs_static"].arm("dynamic").key(budget, "spectral"),
        studies["dynamic_vs_static"].arm("dynamic").key(ablation.Budget(epochs=1), "cifar10"),
    }
    assert len(others) == 6
    # A changed default changes the model, so its runs are not reused.
    length_8 = studies["spectrum_length"].arm("L=8").key(budget, "cifar10")
    monkeypatch.setitem(TOKEN_MIXERS, "dsm",
                        partial(DynamicSpectrumMixer, dynamic=True, spectrum_length=8))
    assert studies["dynamic_vs_static"].arm("dynamic").key(budget, "cifar10") == length_8


def test_execution_options_leave_run_keys_and_stored_weights_as_they_were():
    """Options that change how a mixer computes, not what (``EXECUTION_OPTIONS``), are left out
    of run keys: either value trains the same model, and the weights notebook 06 loads (stored
    before the option existed) are still found."""
    assert EXECUTION_OPTIONS <= set(mixer_options("dsm")) & set(mixer_options("gfnet"))
    stored = Path(__file__).resolve().parents[1] / "data" / "results" / "cpu-distractors"
    budget = ablation.Budget(**json.loads(
        (stored / "dswg_form-distractors.json").read_text())["budget"])
    for name in ("DSWG", "DSWG, first form"):
        arm = ablation.STUDIES["dswg_form"].arm(name).with_mixer_options(descriptor="log")
        assert ablation.weights_path(stored, "distractors", arm, budget, 0).exists()
        for option in EXECUTION_OPTIONS:
            other = arm.with_mixer_options(**{option: not mixer_options("dsm")[option]})
            assert other.key(budget, "distractors") == arm.key(budget, "distractors")


def test_an_arm_with_a_default_spelled_out_keeps_its_runs():
    """``with_mixer_options`` pins an option (e.g. the descriptor a stored run had as its
    default): the run key is that of the arm with the option given outright, the arm itself is
    unchanged, and a value other than the default gives other runs."""
    budget = ablation.Budget()
    dynamic = ablation.STUDIES["dynamic_vs_static"].arm("dynamic")
    default = mixer_options("dsm")["descriptor"]
    pinned = dynamic.with_mixer_options(descriptor=default)
    assert pinned.model_options["mixer_options"] == {"descriptor": default}
    assert dynamic.model_options["mixer_options"] == {}
    assert pinned.key(budget, "cifar10") == dynamic.key(budget, "cifar10")
    other = next(d for d in DESCRIPTORS if d != default)
    assert dynamic.with_mixer_options(descriptor=other).key(budget, "cifar10") != pinned.key(
        budget, "cifar10")
    length_2 = ablation.STUDIES["spectrum_length"].arm("L=2").with_mixer_options(num_groups=2)
    assert length_2.model_options["mixer_options"] == {"spectrum_length": 2, "num_groups": 2}


def test_two_processes_share_one_study(tmp_path):
    """Runs claimed by another live process are left to it and read once it wrote them; a
    claim left by a dead process is taken over."""
    import os

    budget = ablation.Budget(epochs=1, n_train=32, n_test=16, batch_size=16)
    study = ablation.STUDIES["dynamic_vs_static"]
    dead = run_path(tmp_path, "spectral", study.arm("static"), budget, 0)
    dead.parent.mkdir(parents=True)
    dead.with_suffix(".claim").write_text("999999999")  # no such process
    record = ablation.run_study(study, "spectral", seeds=1, budget=budget, out=tmp_path,
                                progress=False)
    assert record["runs_trained_now"] == 3 and not list(tmp_path.rglob("*.claim"))
    held = run_path(tmp_path, "spectral", study.arm("dynamic"), budget, 1)
    with _claim(held) as claimed:
        assert claimed and held.with_suffix(".claim").read_text() == str(os.getpid())
        with _claim(held) as again:
            assert not again  # a live holder keeps its run


def test_budget_curve_runs_each_arm_at_each_budget(tmp_path, capsys):
    argv = ["ablate", "--curve", "32x1,48x1", "--data", "spectral", "--seeds", "1",
            "--n-test", "16", "--batch-size", "16", "--out", str(tmp_path)]
    assert cli(argv) == 0
    table = capsys.readouterr().out
    assert "static - none" in table and "48      1" in table
    curve = json.loads((tmp_path / "budget_curve-spectral.json").read_text())
    assert curve["schema"] == ablation.CURVE_SCHEMA and len(curve["rows"]) == 2 * 3
    assert {r["arm"] for r in curve["rows"]} == set(ablation.CURVE_ARMS)
    assert cli(argv[:2] + ["32x1,12"] + argv[3:]) == 2
    assert "N_TRAINxEPOCHS" in capsys.readouterr().err
