"""The studies: arms that differ in one thing, the budget they train at, and the data.

Each :class:`Study` compares arms that differ in one thing and share the body (``dsm_micro`` by
default), the data, the budget and every initialisation they have in common (the static
spectral weight starts as ``0.02 * N(0, 1)`` in every arm unless the study is about that start).
An arm's :meth:`Arm.key` names its run configuration across studies, so an arm shared by several
studies (the default DSM arm appears in five) is trained once.

Classification studies (:data:`STUDIES`, on :data:`STUDY_DATA`) score test top-1; the dense
studies (:data:`DENSE_STUDIES`, on :data:`DENSE_DATA`) train the same arms as a Semantic FPN
segmenter or a RetinaNet detector (:func:`dsm_ref.dense.create_dense_model`) through the same
trainer and score mIoU or mAP (:data:`TASK_METRICS`). The task is the data's. An arm may start
its backbone from a classification run (:class:`Pretraining`), trained once beforehand and
stored as a run of its own.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..checks import check_choice
from ..data import dataset_task
from ..flops import EXTRA_FLOP_FORMULAS
from ..models import DSM, EXECUTION_OPTIONS, TOKEN_MIXERS, create_model, mixer_options

__all__ = ["Arm", "Study", "Budget", "Pretraining", "STUDIES", "DENSE_STUDIES", "STUDY_DATA",
           "DENSE_DATA", "PRETRAIN_DATA", "TASK_METRICS", "DEFAULT_BUDGETS", "QUALITY_MARGIN",
           "SCHEMA", "CURVE_SCHEMA", "CURVE_ARMS", "arm_cost", "find_study", "data_key",
           "data_name", "data_task", "default_budget", "arm_model_options", "pretraining_run"]

SCHEMA = "dsm_ref.ablation/v1"


CURVE_SCHEMA = "dsm_ref.budget_curve/v1"


# The two datasets of every study: real photos, and a synthetic task whose informative band
# varies by image (dsm_ref.data.SPECTRAL_TASKS["band_shift"]).
STUDY_DATA = {"cifar10": "cifar10", "spectral": "spectral/band_shift",
            "distractors": "spectral/distractors"}

# The data of the dense studies: CIFAR-10 mosaics (segmentation, detection; 11 classes with the
# background) and the spectral regions (segmentation by local frequency band; no files needed).
DENSE_DATA = {"mosaic-segment": "mosaic-segment/cifar10", "mosaic-detect": "mosaic-detect/cifar10",
              "spectral-regions": "spectral-regions"}

# Where a pretrained arm's backbone is trained first: classification of the images the dense
# data is made of (CIFAR-10 for its mosaics; the spectral band task, 32 px, for the regions).
PRETRAIN_DATA = {"mosaic-segment": "cifar10", "mosaic-detect": "cifar10",
                 "spectral-regions": "spectral"}

# The test metrics a study reports per task (percent); the first is the headline, whose best
# value the trainer tracks. Each metric is its own family of comparisons (Holm within it).
TASK_METRICS = {"classify": ("test_top1",), "segment": ("test_miou", "test_pixel_accuracy"),
                "detect": ("test_map", "test_map_50")}


def data_key(name: str) -> str:
    """The study data key of ``name``: a key of :data:`STUDY_DATA` or :data:`DENSE_DATA`, or the
    dataset it names (``"mosaic-segment/cifar10"`` -> ``"mosaic-segment"``)."""
    keys = {**STUDY_DATA, **DENSE_DATA}
    if name in keys:
        return name
    by_name = {value: key for key, value in keys.items()}
    return by_name.get(name) or check_choice("data", name, keys)


def data_name(key: str) -> str:
    """The registered dataset (:func:`dsm_ref.data.build_datasets`) of a study data key."""
    return {**STUDY_DATA, **DENSE_DATA}[data_key(key)]


def data_task(key: str) -> str:
    """``"classify"``, ``"segment"`` or ``"detect"``: what the study data ``key`` is scored on."""
    return dataset_task(data_name(key))


@dataclass(frozen=True)
class Arm:
    """One configuration of a study: ``create_model(budget.model, **model_options)``.

    ``expected``: the sign the study's claim predicts for ``arm - reference`` (+1 better, -1
    worse), or ``None`` where the claim predicts no direction; verdicts are worded from it.
    ``pretrain``: start the backbone of a dense model from a classification run of the same
    backbone (:class:`Pretraining`, on :data:`PRETRAIN_DATA`), ``None`` from scratch.
    """

    name: str
    model_options: dict[str, Any]
    expected: int | None = None
    pretrain: Pretraining | None = None

    def key(self, budget: Budget, dataset: str) -> str:
        """Identifies a run configuration (without the seed) across studies and invocations.
        Budget fields at their defaults that came after the first studies (``img_size``,
        ``model_options``) and an arm without pretraining leave the key as it was, so stored
        runs stay found."""
        payload = {"model_options": _resolved(self.model_options), "budget": _budget_key(budget),
                   "data": dataset}
        if self.pretrain is not None:
            payload["pretrain"] = asdict(self.pretrain)
        text = json.dumps(payload, sort_keys=True, default=repr)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def with_mixer_options(self, **options: Any) -> Arm:
        """This arm with ``options`` set on its token mixer, e.g. the DSWG descriptor a stored
        run was trained with while it was the default (``descriptor="log"``): its key, and so
        its stored run and weights, are then those of that run."""
        mixer = {**(self.model_options.get("mixer_options") or {}), **options}
        return replace(self, model_options={**self.model_options, "mixer_options": mixer})


def _resolved(model_options: dict[str, Any]) -> dict[str, Any]:
    """``model_options`` with every mixer option spelled out, defaults included
    (:func:`dsm_ref.models.mixer_options`). A run's key then names the model it trains:
    ``spectrum_length=4`` and no option at all share one cached run, and a changed default
    gives new runs instead of silently reusing stale ones. Options that change only how the
    mixer computes (:data:`dsm_ref.models.EXECUTION_OPTIONS`) are left out: they train the same
    model."""
    name = model_options.get("token_mixer")
    if name not in TOKEN_MIXERS:
        return model_options
    options = {key: value for key, value in
               mixer_options(name, model_options.get("mixer_options")).items()
               if key not in EXECUTION_OPTIONS}
    if options.get("dct_method") == "auto":
        # "auto" takes the matmul at every grid below dsm_ref.dct.AUTO_CROSSOVER (224 per side),
        # far above the grids the studies train on, so its runs are the matmul's (the default
        # before it): the same numbers, and the stored runs stay found.
        options = {**options, "dct_method": "matmul"}
    return {**model_options, "mixer_options": options}


def _budget_key(budget: Budget) -> dict:
    fields = asdict(budget)
    for name in _LATER_FIELDS:
        if fields[name] is None:
            del fields[name]
    return fields


@dataclass(frozen=True)
class Study:
    """Arms that differ in one thing; ``reference`` is the arm paired differences are taken to.
    ``tasks``: what the study's data may be scored on (``"classify"``, ``"segment"``,
    ``"detect"``)."""

    name: str
    question: str
    paper: str
    arms: tuple[Arm, ...]
    reference: str
    tasks: tuple[str, ...] = ("classify",)

    def arm(self, name: str) -> Arm:
        return next(arm for arm in self.arms if arm.name == name)


@dataclass(frozen=True)
class Budget:
    """What every run of a study gets. Defaults: the CPU grid of ``data/results/``.

    ``n_train``, ``n_test`` count canvases for dense data. ``img_size``: the data's size
    (``None``: the dataset's default; CIFAR-10 is 32 px). ``model_options``: options every arm's
    model gets besides its own, e.g. the body's ``dims`` or a dense head's ``neck_channels``.
    """

    model: str = "dsm_micro"
    epochs: int = 8
    n_train: int | None = 5000
    n_test: int | None = 2000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    img_size: int | None = None
    model_options: dict[str, Any] | None = None


# Budget fields added after runs were stored: left out of a run's key while they are None.
_LATER_FIELDS = ("img_size", "model_options")


@dataclass(frozen=True)
class Pretraining:
    """A classification run a pretrained arm's backbone starts from: the study's body
    (``Budget.model`` and the backbone's share of ``Budget.model_options``) with the arm's mixer,
    trained with this budget at the classification data's own size (32 px) on
    :data:`PRETRAIN_DATA` with ``seed``; its weights load into the dense model at the dense
    data's size (the spectral weights are resized, :func:`dsm_ref.dense.load_backbone_weights`).
    One run serves every seed of the arm: the seeds then differ in the dense head's start, the
    data and its order, as the scratch arm's do. Defaults: 10,000 CIFAR-10 images x 6 epochs,
    45.3 % top-1 in 54 s on one thread with the segmentation body (stem stride 4)."""

    epochs: int = 6
    n_train: int | None = 10000
    n_test: int | None = 2000
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0


def arm_model_options(arm: Arm, budget: Budget, *, backbone_only: bool = False) -> dict[str, Any]:
    """The options of ``arm``'s model: the budget's, then the arm's. ``backbone_only``: only the
    backbone's (keyword arguments of :class:`~dsm_ref.models.DSM` other than ``num_classes``,
    ``features_only`` and ``img_size``, which the task and the data set), as the pretraining run
    of a dense arm builds its classifier."""
    options = {**(budget.model_options or {}), **arm.model_options}
    if backbone_only:
        names = set(inspect.signature(DSM).parameters) - {"num_classes", "features_only",
                                                          "img_size"}
        options = {k: v for k, v in options.items() if k in names}
    return options


def pretraining_run(arm: Arm, budget: Budget, dataset: str) -> tuple[str, Arm, Budget, int]:
    """``(data key, arm, budget, seed)`` of the classification run that the pretrained ``arm``
    of a dense study on ``dataset`` starts from; ``ValueError`` for an arm without one."""
    if arm.pretrain is None:
        raise ValueError(f"arm {arm.name!r} starts from scratch: it has no pretraining run")
    spec = arm.pretrain
    backbone = arm_model_options(arm, budget, backbone_only=True)
    options = {k: v for k, v in backbone.items() if k not in arm.model_options}
    pre_budget = Budget(model=budget.model, epochs=spec.epochs, n_train=spec.n_train,
                        n_test=spec.n_test, batch_size=spec.batch_size, lr=spec.lr,
                        weight_decay=budget.weight_decay, model_options=options or None)
    pre_arm = Arm(f"{arm.name}: pretraining", dict(arm.model_options))
    return PRETRAIN_DATA[data_key(dataset)], pre_arm, pre_budget, spec.seed


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
             Arm("DSWG, first form", _dsm(descriptor="log", descriptor_norm=False,
                                          hidden_init="small"))),
            reference="static",
        ),
        Study(
            "descriptor",
            "Does the DSWG select as well from the log of each channel group's RMS magnitude "
            "(one fused pass over the spectrum) as from log(1+|S|) taken per channel?",
            "the paper: the DSWG 'downsamples the frequency features'; which statistic it "
            "downsamples is ours, and the per-channel logarithm was the DSWG's largest cost on "
            "CPU (BENCHMARKS.md)",
            (Arm("log per channel", _dsm(descriptor="log")),
             Arm("log of group RMS", _dsm(descriptor="log_rms")),
             Arm("static", _mixer("static"), expected=-1)),
            reference="log per channel",
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
            "not stated; our defaults are softmax (mean 1) and mean pooling of the default "
            "descriptor; 'log of mean' takes log(1+|S|) of each channel group's mean magnitude "
            "instead (the descriptor study compares the default with the earlier per-channel log)",
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


# The dense studies: the same arms trained as a segmenter or a detector (the task is the data's).
_MIXERS = STUDIES["mixers"]
DENSE_STUDIES: dict[str, Study] = {
    study.name: study
    for study in [
        Study(
            "dense_mixers",
            "How does the DSM mixer compare in dense prediction (segmentation mIoU, detection "
            "mAP) with its static twin, GFNet's filter, attention and a depthwise conv, in the "
            "same body and head?",
            "DSM transfers to detection and segmentation (49.9 mIoU on ADE20K), whole models; "
            "mixers compared in one body and head, on small mosaics, are ours",
            tuple(_MIXERS.arm(name) for name in ("DSM", "static twin", "GFNet filter",
                                                 "attention", "depthwise 7x7")),
            reference="DSM", tasks=("segment", "detect"),
        ),
        Study(
            "pretrained",
            "Does a backbone pretrained on classification (32 px) help the dense model (at its "
            "own, larger size) over training it from scratch?",
            "not stated (dense backbones usually start from ImageNet classification weights); "
            "the comparison at a small budget, from CIFAR-10 classification, is ours",
            (Arm("scratch", _dsm()), Arm("pretrained", _dsm(), expected=+1,
                                         pretrain=Pretraining())),
            reference="scratch", tasks=("segment", "detect"),
        ),
    ]
}


def find_study(name: str) -> Study:
    """The study ``name`` of :data:`STUDIES` or :data:`DENSE_STUDIES`; ``ValueError`` listing
    them otherwise."""
    studies = {**STUDIES, **DENSE_STUDIES}
    return studies[check_choice("study", name, studies)]


# The body and head of the dense studies: dsm_micro's depths at a quarter of its width.
_DENSE_BODY = {"dims": (16, 32, 48, 64), "neck_channels": 32, "head_channels": 32}

# What a study on each task trains with unless given a budget, each timed on one CPU thread of a
# shared 2-core machine (load ~4), DSM arm, seed 0. Classification: the CPU grid of
# data/results/. Segmentation (ours): 64-px canvases, stem stride 4 (pyramid strides 4-32, as
# Semantic FPN's; a third of stride 2's cost for the same mIoU per epoch in our trials), a
# 32-channel FPN and head, batch 8 and lr 5e-3 (notebook 08's lr; batch 8 learnt fastest per
# image of those tried), 1200 canvases x 6 epochs: 12.7 % mIoU against 6.0 % for the majority
# class, still rising, in 137 s. Detection (ours): RetinaNet on the same widths at lr 2e-4 (it
# diverges at 2e-3) and stem stride 2, whose finest anchors (16-25 px) fit the 16-38 px pastes
# (stride 4's start at 32 px: mAP 1.1 on 1200 canvases in 219 s); 800 canvases x 6 epochs:
# mAP 2.2 %, mAP@50 6.7 % in 259 s.
DEFAULT_BUDGETS: dict[str, Budget] = {
    "classify": Budget(),
    "segment": Budget(epochs=6, n_train=1200, n_test=200, batch_size=8, lr=5e-3, img_size=64,
                      model_options={**_DENSE_BODY, "stem_stride": 4}),
    "detect": Budget(epochs=6, n_train=800, n_test=200, batch_size=8, lr=2e-4, img_size=64,
                     model_options={**_DENSE_BODY, "stem_stride": 2}),
}

# Per-run minimum quality of the dense tasks, in points of the headline metric above the run's
# trivial baseline (segmentation: the training set's majority class everywhere, ~6 % mIoU on the
# CIFAR-10 mosaics; detection: no detections, mAP 0). A run below it learnt too little for a
# comparison to mean much.
QUALITY_MARGIN = {"segment": 3.0, "detect": 1.0}


def default_budget(dataset: str) -> Budget:
    """The budget a study on ``dataset`` (a data key) gets unless it is given one."""
    return DEFAULT_BUDGETS[data_task(dataset)]


def arm_cost(arm: Arm, budget: Budget, img_size: int = 32, num_classes: int = 10, *,
             task: str = "classify") -> dict:
    """Params and multiply-adds per image of the arm's model at ``img_size``, and the DSWGs'
    share; for a dense ``task``, of the whole dense model (backbone, neck and head). Counted on
    two images (a GroupNorm of the dense head needs more than one value per group, which a
    single small image may not give on its coarsest level) and halved."""
    options = arm_model_options(arm, budget)
    images = torch.zeros(2, 3, img_size, img_size)
    if task == "classify":
        model = create_model(budget.model, img_size=img_size, num_classes=num_classes,
                             **options)
    else:
        from ..dense import create_dense_model  # torchvision's detectors: only for dense tasks

        model = create_dense_model(budget.model, task, num_classes, img_size=img_size,
                                   **options)
        images = list(images) if task == "detect" else images
    model.eval()
    dswg_modules = [m for name, m in model.named_modules() if name.endswith(".dswg")]
    # bench's formulas add what torch's counter misses on CPU: FFTs (5 N log2 N) and attention.
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter, \
            torch.no_grad():
        model(images)
    counts = counter.get_flop_counts()
    dswg_flops = sum(
        sum(ops.values()) for name, ops in counts.items() if name.endswith(".dswg")
    )
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "dswg_params": sum(p.numel() for m in dswg_modules for p in m.parameters()),
        "macs": counter.get_total_flops() // 4,  # per image (2 images), 2 flops per MAC
        "dswg_macs": dswg_flops // 4,
    }
