"""Exercises of notebook 05, training: checks and solutions.

1. ``warmup_cosine_factor(step, total_steps, warmup_steps, min_factor) -> float``: the learning
   rate schedule, linear warmup then a half cosine; checked against
   ``dsm_ref.train.cosine_lr_factor``.
2. ``label_smoothing_loss(logits (N, K), targets (N,), smoothing) -> scalar``: cross-entropy
   against smoothed targets; checked against ``F.cross_entropy(..., label_smoothing=...)``, the
   loss ``dsm_ref.train`` trains with.
3. ``topk_accuracy(logits (N, K), labels (N,), k) -> float``: top-k accuracy in percent; checked
   against ``dsm_ref.train.evaluate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..train import cosine_lr_factor, evaluate
from ._common import Mismatch, as_tensor, call, expect_close, run_check

__all__ = [
    "check_warmup_cosine_factor", "solution_warmup_cosine_factor",
    "check_label_smoothing_loss", "solution_label_smoothing_loss",
    "check_topk_accuracy", "solution_topk_accuracy",
]


# --- 1. warmup + cosine --------------------------------------------------------------------------

def solution_warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int,
                                  min_factor: float) -> float:
    """``(step + 1) / w`` during the warmup, then ``m + (1 - m) (1 + cos(pi p)) / 2`` with the
    progress ``p = (step - w) / (total - w)`` capped at 1."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def check_warmup_cosine_factor(function: Callable) -> bool:
    """``function(step, total_steps=..., warmup_steps=..., min_factor=...)`` must return the
    factor of the peak learning rate at optimizer step ``step`` (0-based)."""

    def cases() -> str:
        schedules = [
            ("the live run of section 3 (124 steps, 19 of warmup, floor 0.005)", 124, 19, 0.005,
             range(124)),
            ("a schedule without warmup (10 steps, floor 0)", 10, 0, 0.0, range(10)),
            ("a schedule that is all warmup (6 steps)", 6, 6, 0.1, range(6)),
            ("steps past the end (20 steps, 5 of warmup, floor 0.1; steps 18 to 24)", 20, 5, 0.1,
             range(18, 25)),
        ]
        for name, total, warmup, floor, steps in schedules:
            for step in steps:
                case = f"step {step} of {name}"
                expected = cosine_lr_factor(step, total_steps=total, warmup_steps=warmup,
                                            min_factor=floor)
                got = call(function, case, step, total_steps=total, warmup_steps=warmup,
                           min_factor=floor)
                hint = ("Warmup: (step + 1) / warmup_steps; then min_factor + (1 - min_factor) * "
                        "(1 + cos(pi * progress)) / 2 with progress = (step - warmup) / "
                        "(total - warmup).")
                if step < warmup and step == 0:
                    hint = ("The first step must not have a learning rate of 0: the warmup is "
                            "(step + 1) / warmup_steps, which reaches 1 at the last warmup step.")
                elif step == warmup:
                    hint = "The cosine starts at 1 (the peak) at the first step after the warmup."
                elif step >= total:
                    hint = ("After total_steps the factor stays at min_factor: cap the progress "
                            "at 1, or the cosine climbs back up.")
                expect_close(as_tensor(got, case), torch.tensor(expected, dtype=torch.float64),
                             case, hint, atol=1e-7, rtol=1e-6)
        return ("It equals dsm_ref.train.cosine_lr_factor at every step of 4 schedules, with and "
                "without warmup, and past the end.")

    return run_check("warmup_cosine_factor", function, cases)


# --- 2. label smoothing --------------------------------------------------------------------------

def solution_label_smoothing_loss(logits: Tensor, targets: Tensor, smoothing: float) -> Tensor:
    """Mean over samples of ``-sum_k q_k log p_k`` with ``q = (1 - eps) one_hot + eps / K``."""
    log_p = torch.log_softmax(logits, dim=-1)  # stable: never log(softmax) of large logits
    nll = -log_p.gather(1, targets[:, None]).squeeze(1)
    uniform = -log_p.mean(dim=-1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


def _other_classes_variant(logits: Tensor, targets: Tensor, smoothing: float) -> Tensor:
    """The wrong convention: ``1 - eps`` on the true class, ``eps / (K - 1)`` on the others."""
    k = logits.shape[-1]
    q = torch.full_like(logits, smoothing / (k - 1))
    q.scatter_(1, targets[:, None], 1 - smoothing)
    return -(q * torch.log_softmax(logits, -1)).sum(-1).mean()


def check_label_smoothing_loss(function: Callable) -> bool:
    """``function(logits, targets, smoothing)`` must return the mean label-smoothed
    cross-entropy, as ``F.cross_entropy(logits, targets, label_smoothing=smoothing)``."""

    def cases() -> str:
        generator = torch.Generator().manual_seed(7)
        big = torch.tensor([[1000.0, -1000.0, 0.0], [-900.0, 900.0, 10.0]], dtype=torch.float64)
        loss_cases = [
            ("10 classes, no smoothing", torch.randn(8, 10, generator=generator,
                                                     dtype=torch.float64), 0.0),
            ("10 classes, smoothing 0.1", torch.randn(8, 10, generator=generator,
                                                      dtype=torch.float64), 0.1),
            ("2 classes, smoothing 0.2", torch.randn(5, 2, generator=generator,
                                                     dtype=torch.float64), 0.2),
            ("one sample, smoothing 1 (a uniform target)", torch.randn(1, 4, generator=generator,
                                                                       dtype=torch.float64), 1.0),
            ("logits of +-1000, smoothing 0.1", big, 0.1),
        ]
        for case, logits, smoothing in loss_cases:
            targets = torch.randint(logits.shape[1], (logits.shape[0],), generator=generator)
            expected = F.cross_entropy(logits, targets, label_smoothing=smoothing)
            got = as_tensor(call(function, case, logits.clone(), targets.clone(), smoothing),
                            case)
            hint = ("The smoothed target is (1 - eps) on the true class plus eps / K on every "
                    "class; average -sum_k q_k log p_k over the samples.")
            if got.numel() == 1 and expected.numel() == 1 and not torch.isclose(
                    got.reshape(()), expected, atol=1e-6, rtol=1e-6):
                got = got.reshape(())
                if not torch.isfinite(got):
                    hint = ("log(softmax(z)) underflows to log(0) for logits of +-1000: use "
                            "torch.log_softmax, which subtracts the largest logit first.")
                elif smoothing > 0 and torch.isclose(
                        got, _other_classes_variant(logits, targets, smoothing)):
                    hint = ("You spread eps over the K - 1 wrong classes; PyTorch and "
                            "dsm_ref.train spread it over all K classes, the true one included: "
                            "q = (1 - eps) one_hot + eps / K.")
                elif torch.isclose(got, expected * len(targets)):
                    hint = "Average over the samples; you summed them."
            elif got.numel() != 1:
                raise Mismatch(f"On {case} expected one number (the mean over the samples), got "
                               f"a tensor of shape {tuple(got.shape)}.")
            expect_close(got.reshape(()), expected, case, hint, atol=1e-6, rtol=1e-6)
        return ("It equals F.cross_entropy(..., label_smoothing=eps), the loss dsm_ref.train "
                "uses, for eps from 0 to 1 and for logits of +-1000.")

    return run_check("label_smoothing_loss", function, cases)


# --- 3. top-k accuracy ---------------------------------------------------------------------------

def solution_topk_accuracy(logits: Tensor, labels: Tensor, k: int) -> float:
    """Percent of samples whose label is among the ``k`` largest logits (all of them if
    ``k >= K``)."""
    top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices  # (N, k)
    return 100.0 * (top == labels[:, None]).any(dim=-1).float().mean().item()


class _Lookup(nn.Module):
    """A "model" that returns stored logits: sample ``i`` is the one-number image ``[i]``."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits.float())

    def forward(self, index: Tensor) -> Tensor:
        return self.table[index[:, 0].long()]


def _reference_topk(logits: Tensor, labels: Tensor, k: int) -> float:
    dataset = [(torch.tensor([float(i)]), int(label)) for i, label in enumerate(labels)]
    metrics = evaluate(_Lookup(logits), dataset, batch_size=64, device="cpu")
    assert k in (1, 5), k  # evaluate reports top-1 and top-5
    return metrics[f"top{k}"]


def check_topk_accuracy(function: Callable) -> bool:
    """``function(logits, labels, k)`` must return the top-``k`` accuracy in percent, as
    ``dsm_ref.train.evaluate`` reports it (``k`` = 1 or 5)."""

    def cases() -> str:
        generator = torch.Generator().manual_seed(11)
        logits_10 = torch.randn(200, 10, generator=generator)
        labels_10 = torch.randint(10, (200,), generator=generator)
        accuracy_cases = [
            ("200 samples, 10 classes, k = 1", logits_10, labels_10, 1),
            ("200 samples, 10 classes, k = 5", logits_10, labels_10, 5),
            ("one sample, 10 classes, k = 5", logits_10[:1], labels_10[:1], 5),
            ("3 classes, k = 5 (more than the classes)", torch.randn(40, 3, generator=generator),
             torch.randint(3, (40,), generator=generator), 5),
        ]
        for case, logits, labels, k in accuracy_cases:
            expected = _reference_topk(logits, labels, k)
            hint = ("k larger than the number of classes: every label is then among the top k, "
                    "so use min(k, K)." if k > logits.shape[-1] else "")
            got = as_tensor(call(function, case, logits.clone(), labels.clone(), k, hint=hint),
                            case)
            if got.numel() == 1 and abs(100 * float(got) - expected) < 1e-4 and expected > 0:
                hint = "Return a percentage (0 to 100), as evaluate does, not a fraction."
            elif not hint:
                hint = ("Take the k largest logits of each sample (topk) and count a hit if the "
                        "label is among them; then 100 * hits / N.")
            expect_close(got.reshape(()) if got.numel() == 1 else got,
                         torch.tensor(expected, dtype=torch.float64), case, hint,
                         atol=1e-4, rtol=1e-6)
        return ("It matches dsm_ref.train.evaluate's top-1 and top-5, also with fewer than 5 "
                "classes.")

    return run_check("topk_accuracy", function, cases)

