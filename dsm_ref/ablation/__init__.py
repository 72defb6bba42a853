"""Ablations of the paper's claims and of our choices as named studies, a resumable runner
shared by processes, and tables.

Defined in notebook 06. Each :class:`Study` compares arms that differ in one thing and share the
body, the data, the budget and every initialisation they have in common. Every arm is trained
with several seeds; a study reports mean +- std per arm and the paired difference to the study's
reference arm (same seed: same initial weights where the arms share them, same data order, same
augmentation draws), with its 95 % interval, p-value, Holm-adjusted p-value and verdict.

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
                  study_table,
                  verdict,
                  with_statistics,
)
from .run import (
                  arm_config,
                  decode_predictions,
                  encode_predictions,
                  load_weights,
                  run_arm,
                  save_weights,
                  weights_path,
)
from .studies import (
                  CURVE_ARMS,
                  CURVE_SCHEMA,
                  SCHEMA,
                  STUDIES,
                  STUDY_DATA,
                  Arm,
                  Budget,
                  Study,
                  arm_cost,
)

__all__ = [
    "Arm", "Study", "Budget", "STUDIES", "STUDY_DATA", "SCHEMA", "CURVE_SCHEMA", "CURVE_ARMS",
    "arm_cost", "arm_config", "run_arm", "weights_path", "save_weights", "load_weights",
    "encode_predictions", "decode_predictions", "run_study", "run_budget_curve",
    "paired_statistics", "with_statistics", "load_study", "study_table", "verdict", "curve_table",
]
