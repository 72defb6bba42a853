"""Ablations of the paper's claims and of our choices as named studies, a resumable runner
shared by processes, and tables.

Defined in notebook 06. Each :class:`Study` compares arms that differ in one thing and share the
body, the data, the budget and every initialisation they have in common. Every arm is trained
with several seeds; a study reports mean +- std per arm and the paired difference to the study's
reference arm (same seed: same initial weights where the arms share them, same data order, same
augmentation draws), with its 95 % interval, p-value, Holm-adjusted p-value and verdict.

The dense studies (:data:`DENSE_STUDIES`: the mixers, and a pretrained backbone vs scratch) run
the same way on dense data (:data:`DENSE_DATA`): a Semantic FPN segmenter or a RetinaNet detector
on the same body, scored by mIoU or mAP (:data:`TASK_METRICS`), with a per-run quality floor
over the trivial baseline (:data:`QUALITY_MARGIN`) and the budgets of :data:`DEFAULT_BUDGETS`.

Modules, one job each: :mod:`.studies` (the arms, studies, budgets, datasets and an arm's cost),
:mod:`.run` (one run and its record), :mod:`.sharing` (many runs through a cache several
processes share, resumable), :mod:`.records` (a study's or budget curve's record),
:mod:`.report` (reading records: statistics, tables, verdicts). The command line is
:mod:`dsm_ref.commands.ablate`.
"""

from .records import run_budget_curve, run_study
from .report import (
                  curve_table,
                  load_study,
                  paired_statistics,
                  study_markdown,
                  study_table,
                  verdict,
                  with_statistics,
)
from .run import (
                  arm_config,
                  decode_predictions,
                  dense_scores,
                  encode_predictions,
                  load_weights,
                  pretrained_weights_path,
                  run_arm,
                  save_weights,
                  weights_path,
)
from .studies import (
                  CURVE_ARMS,
                  CURVE_SCHEMA,
                  DEFAULT_BUDGETS,
                  DENSE_DATA,
                  DENSE_STUDIES,
                  PRETRAIN_DATA,
                  QUALITY_MARGIN,
                  SCHEMA,
                  STUDIES,
                  STUDY_DATA,
                  TASK_METRICS,
                  Arm,
                  Budget,
                  Pretraining,
                  Study,
                  arm_cost,
                  arm_model_options,
                  data_key,
                  data_task,
                  default_budget,
                  find_study,
                  pretraining_run,
)

__all__ = [
    "Arm", "Study", "Budget", "Pretraining", "STUDIES", "DENSE_STUDIES", "STUDY_DATA",
    "DENSE_DATA", "PRETRAIN_DATA", "TASK_METRICS", "DEFAULT_BUDGETS", "QUALITY_MARGIN", "SCHEMA",
    "CURVE_SCHEMA", "CURVE_ARMS", "arm_cost", "arm_model_options", "data_key", "data_task",
    "default_budget", "find_study", "pretraining_run", "arm_config", "run_arm", "dense_scores",
    "weights_path", "pretrained_weights_path", "save_weights", "load_weights",
    "encode_predictions", "decode_predictions", "run_study", "run_budget_curve",
    "paired_statistics", "with_statistics", "load_study", "study_table", "study_markdown",
    "verdict", "curve_table",
]
