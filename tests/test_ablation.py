"""dsm_ref.ablation: every study end to end at a toy size, the JSON schema, resume, bad names."""

import json
from functools import partial

import pytest

from dsm_ref import ablation
from dsm_ref.cli import main as cli
from dsm_ref.mixers import DynamicSpectrumMixer

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
    for key in ("command", "git_commit", "device", "environment"):
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
    assert first["runs_trained_now"] == 4
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
    assert "dynamic" in table and "reference" in table
    one_seed = ablation.verdict(record, "dynamic")
    assert one_seed == "dynamic vs static: one seed, no spread to judge by"
    two_seeds = {**record, "paired_differences": [
        {"arm": "dynamic", "minus": "static", "mean": 3.0, "std": 0.5, "n": 3}]}
    assert ablation.verdict(two_seeds, "dynamic") == "dynamic is better than static on spectral"


def test_load_study_rejects_foreign_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"schema": "other"}')
    with pytest.raises(ValueError, match="not a dsm_ref.ablation/v1 record"):
        ablation.load_study(path)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--study", "depth"], "unknown study 'depth'; valid: dynamic_vs_static, spectrum_length"),
        (["--data", "imagenet"], "unknown data 'imagenet'; valid: cifar10, spectral, both"),
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
    monkeypatch.setitem(ablation.TOKEN_MIXERS, "dsm",
                        partial(DynamicSpectrumMixer, dynamic=True, spectrum_length=8))
    assert studies["dynamic_vs_static"].arm("dynamic").key(budget, "cifar10") == length_8
