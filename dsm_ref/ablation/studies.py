"""The studies: arms that differ in one thing, the budget they train at, and the data.

Each :class:`Study` compares arms that differ in one thing and share the body (``dsm_micro`` by
default), the data, the budget and every initialisation they have in common (the static
spectral weight starts as ``0.02 * N(0, 1)`` in every arm unless the study is about that start).
An arm's :meth:`Arm.key` names its run configuration across studies, so an arm shared by several
studies (the default DSM arm appears in five) is trained once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..flops import EXTRA_FLOP_FORMULAS
from ..models import TOKEN_MIXERS, create_model, mixer_options

__all__ = ["Arm", "Study", "Budget", "STUDIES", "STUDY_DATA", "SCHEMA", "CURVE_SCHEMA",
           "CURVE_ARMS", "arm_cost"]

SCHEMA = "dsm_ref.ablation/v1"


CURVE_SCHEMA = "dsm_ref.budget_curve/v1"


# The two datasets of every study: real photos, and a synthetic task whose informative band
# varies by image (dsm_ref.data.SPECTRAL_TASKS["band_shift"]).
STUDY_DATA = {"cifar10": "cifar10", "spectral": "spectral/band_shift",
            "distractors": "spectral/distractors"}


@dataclass(frozen=True)
class Arm:
    """One configuration of a study: ``create_model(budget.model, **model_options)``.

    ``expected``: the sign the study's claim predicts for ``arm - reference`` (+1 better, -1
    worse), or ``None`` where the claim predicts no direction; verdicts are worded from it.
    """

    name: str
    model_options: dict[str, Any]
    expected: int | None = None

    def key(self, budget: Budget, dataset: str) -> str:
        """Identifies a run configuration (without the seed) across studies and invocations."""
        payload = json.dumps(
            {"model_options": _resolved(self.model_options), "budget": asdict(budget),
             "data": dataset},
            sort_keys=True, default=repr,
        )
        return hashlib.sha1(payload.encode()).hexdigest()[:12]


def _resolved(model_options: dict[str, Any]) -> dict[str, Any]:
    """``model_options`` with every mixer option spelled out, defaults included
    (:func:`dsm_ref.models.mixer_options`). A run's key then names the model it trains:
    ``spectrum_length=4`` and no option at all share one cached run, and a changed default
    gives new runs instead of silently reusing stale ones."""
    name = model_options.get("token_mixer")
    if name not in TOKEN_MIXERS:
        return model_options
    options = mixer_options(name, model_options.get("mixer_options"))
    return {**model_options, "mixer_options": options}


@dataclass(frozen=True)
class Study:
    """Arms that differ in one thing; ``reference`` is the arm paired differences are taken to."""

    name: str
    question: str
    paper: str
    arms: tuple[Arm, ...]
    reference: str

    def arm(self, name: str) -> Arm:
        return next(arm for arm in self.arms if arm.name == name)


@dataclass(frozen=True)
class Budget:
    """What every run of a study gets. Defaults: the CPU grid of ``data/results/``."""

    model: str = "dsm_micro"
    epochs: int = 8
    n_train: int | None = 5000
    n_test: int | None = 2000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05


def _dsm(**mixer_options) -> dict:
    return {"token_mixer": "dsm", "mixer_options": mixer_options}


def _mixer(name: str, **mixer_options) -> dict:
    return {"token_mixer": name, "mixer_options": mixer_options}


STUDIES: dict[str, Study] = {
    study.name: study
    for study in [
        Study(
            "dynamic_vs_static",
            "Do content-adaptive band weights (the DSWG) beat a static spectral filter?",
            "dynamic weights help: the DSWG emphasises informative bands per image",
            (Arm("dynamic", _dsm(), expected=+1), Arm("static", _mixer("static")),
             Arm("L=1 (A/A control)", _dsm(spectrum_length=1))),
            reference="static",
        ),
        Study(
            "dswg_form",
            "Does the DSWG select bands per image once its MLP can learn (normalised "
            "descriptors, unit-scale first layer), where its first form did not?",
            "dynamic weights help (the paper); the form of the DSWG's MLP input and init is ours",
            (Arm("DSWG", _dsm(), expected=+1), Arm("static", _mixer("static")),
             Arm("DSWG, first form", _dsm(descriptor_norm=False, hidden_init="small"))),
            reference="static",
        ),
        Study(
            "spectrum_length",
            "How many bands per axis (L) does the DSWG need?",
            "the spectrum length can be shrunk a lot without losing accuracy",
            tuple(Arm(f"L={length}", _dsm(spectrum_length=length)) for length in (1, 2, 4, 8))
            + (Arm("L=full", _dsm(spectrum_length=None)),),
            reference="L=4",
        ),
        Study(
            "transform",
            "Is the real-valued DCT a better basis than the DFT, and does spectral mixing help?",
            "the DCT is the paper's basis (for its log-linear cost); it does not compare it with "
            "the DFT: that comparison, and the no-mixing control, are ours",
            (
                Arm("DCT dynamic", _dsm()),
                Arm("DCT static", _mixer("static"), expected=-1),
                Arm("DFT dynamic", _mixer("gfnet_dynamic"), expected=-1),
                Arm("DFT static", _mixer("gfnet"), expected=-1),
                Arm("no mixing", _mixer("identity"), expected=-1),
            ),
            reference="DCT dynamic",
        ),
        Study(
            "gate",
            "Which gate, band pooling and descriptor should the DSWG use (the paper does not "
            "say)?",
            "not stated; our defaults are softmax (mean 1) and mean pooling of log(1+|S|) taken "
            "per channel; 'log of mean' takes log(1+|S|) of each channel group's mean instead "
            "(one logarithm per group: faster, BENCHMARKS.md)",
            (
                Arm("softmax, mean", _dsm()),
                Arm("2*sigmoid, mean", _dsm(gate="2sigmoid")),
                Arm("sigmoid, mean", _dsm(gate="sigmoid")),
                Arm("softmax, max", _dsm(pool="max")),
                Arm("softmax, mean, log of mean", _dsm(descriptor="log_of_mean")),
            ),
            reference="softmax, mean",
        ),
        Study(
            "mixers",
            "How does the DSM mixer compare with its static twin, GFNet's filter, DFFormer's "
            "dynamic filter, attention and a depthwise conv in the same body?",
            "the abstract: DSM beats earlier transformer- and MLP-based models (whole models, "
            "no cost condition stated); mixers in one body at equal cost, and the dynamic filter "
            "(per-image mixing of DFT filters, the closest peer), are ours to add",
            (
                Arm("DSM", _dsm()),
                Arm("static twin", _mixer("static"), expected=-1),
                Arm("GFNet filter", _mixer("gfnet"), expected=-1),
                Arm("dynamic filter", _mixer("dynamic_filter"), expected=-1),
                Arm("attention", _mixer("attention"), expected=-1),
                Arm("depthwise 7x7", _mixer("dwconv"), expected=-1),
            ),
            reference="DSM",
        ),
        Study(
            "init",
            "How much does the static filter's start move each arm (a control for the others)?",
            "not stated; a prototype saw an all-ones start cost the static arm ~5 points",
            (
                Arm("static, random", _mixer("static", static_init="random")),
                Arm("static, ones", _mixer("static", static_init="ones")),
                Arm("dynamic, random", _dsm(static_init="random"), expected=+1),
                Arm("dynamic, ones", _dsm(static_init="ones")),
            ),
            reference="static, random",
        ),
    ]
}


# The arms whose gap tells whether a budget lets token mixing matter at all.
CURVE_ARMS = ("DCT dynamic", "DCT static", "no mixing")


def arm_cost(arm: Arm, budget: Budget, img_size: int = 32, num_classes: int = 10) -> dict:
    """Params and multiply-adds of the arm's model at ``img_size``, and the DSWGs' share."""
    model = create_model(budget.model, img_size=img_size, num_classes=num_classes,
                         **arm.model_options).eval()
    dswg_modules = [m for name, m in model.named_modules() if name.endswith(".dswg")]
    # bench's formulas add what torch's counter misses on CPU: FFTs (5 N log2 N) and attention.
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter, \
            torch.no_grad():
        model(torch.zeros(1, 3, img_size, img_size))
    counts = counter.get_flop_counts()
    dswg_flops = sum(
        sum(ops.values()) for name, ops in counts.items() if name.endswith(".dswg")
    )
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "dswg_params": sum(p.numel() for m in dswg_modules for p in m.parameters()),
        "macs": counter.get_total_flops() // 2,
        "dswg_macs": dswg_flops // 2,
    }
