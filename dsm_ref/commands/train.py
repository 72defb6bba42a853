"""``python -m dsm_ref train``: options -> :class:`~dsm_ref.train.TrainConfig` ->
:func:`~dsm_ref.train.train`, and the command line recorded with the run.

Unset options keep the ``--preset``'s value, else :class:`~dsm_ref.train.TrainConfig`'s default.
The model's options pass through as given: ``--mixer NAME`` (a name of
:data:`dsm_ref.models.TOKEN_MIXERS`), ``--mixer-option KEY=VALUE`` and ``--model-option
KEY=VALUE`` fill ``TrainConfig.model_options`` (``token_mixer``, ``mixer_options``, the other
keyword arguments of :func:`dsm_ref.models.create_model`); a value is read as a Python literal
(``8``, ``False``, ``None``, ``(32, 64)``) and otherwise kept as text (``gate=2sigmoid``). Their
defaults stay in the model's constructors; their names are checked by
:meth:`TrainConfig.validate <dsm_ref.train.TrainConfig.validate>`, before any data is read.

``--task segment`` / ``--task detect`` train a dense model
(:func:`dsm_ref.dense.create_dense_model`) on a dataset of that task (``mosaic-segment/cifar10``,
``spectral-regions``; ``mosaic-detect/cifar10``); a task and a dataset that do not match exit
with 2 before any data is read.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any, NamedTuple

from ..data import DATASETS, DataError
from ..models import TOKEN_MIXERS, list_models
from ..train import AMP_MODES, PRESETS, TASKS, CheckpointError, TrainConfig, train
from ..train.checkpoint import CHECKPOINT_NAME, load_checkpoint

__all__ = ["add_cli_arguments", "config_from_args", "command_line", "cli_main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _dataset_name(text: str) -> str:
    if text == "spectral" or text in DATASETS:
        return text
    raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; choose from "
                                     f"{', '.join(DATASETS)} (or 'spectral')")


class _Assignment(NamedTuple):
    """One ``KEY=VALUE`` option: the key, the value read as a Python literal (else the text),
    and the text as given (what :func:`command_line` writes back)."""

    key: str
    value: Any
    text: str

    def __str__(self) -> str:
        return self.text


def _assignment(text: str) -> _Assignment:
    """``"spectrum_length=8"`` -> key ``spectrum_length``, value ``8``; ``"gate=2sigmoid"`` ->
    the string ``"2sigmoid"``; ``"dims=(32,64)"`` -> the tuple ``(32, 64)``."""
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. spectrum_length=8), got "
                                         f"{text!r}")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        parsed = value.strip()  # not a literal: the text itself (gate=softmax, dct_method=fft)
    return _Assignment(key, parsed, text)


_CLI_EPILOG = """examples:
  python -m dsm_ref train --model dsm_micro --data cifar10 --epochs 5 --out runs/x
  python -m dsm_ref train --out runs/x --resume            # continue runs/x/checkpoint.pt
  python -m dsm_ref train --data spectral/band_shift --n-train 4000 --epochs 10 --out runs/s
  python -m dsm_ref train --data spectral --mixer static --mixer-option spectrum_length=8 \\
      --model-option "dims=(32, 64, 96, 128)" --out runs/static
  torchrun --nproc_per_node=8 -m dsm_ref train --preset imagenet-dsm_s \\
      --data-dir /data/imagenet --out runs/dsm_s_in1k     # the ImageNet recipe on 8 GPUs
  python -m dsm_ref train --task segment --data mosaic-segment/cifar10 --img-size 64 \\
      --out runs/seg                                       # Semantic FPN on CIFAR mosaics
  python -m dsm_ref train --task detect --data mosaic-detect/cifar10 --img-size 64 \\
      --lr 2e-4 --out runs/det      # RetinaNet (--model-option detector=fcos for FCOS)
CIFAR-10 is read from $DSM_DATA_DIR (see `python -m dsm_ref info`); --download fetches it.
--batch-size is the global batch, split over torchrun's processes."""


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m dsm_ref train``; unset options keep the preset's or the default
    :class:`TrainConfig` value."""
    parser.epilog = _CLI_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    unset = argparse.SUPPRESS
    what = parser.add_argument_group("what to train")
    what.add_argument("--preset", choices=sorted(PRESETS), default=unset,
                      help="a recipe (other options override it): " + ", ".join(PRESETS))
    what.add_argument("--task", choices=TASKS, default=unset,
                      help="classify (default), segment or detect; --data must be a dataset "
                           "of that task")
    what.add_argument("--model", choices=list_models(), default=unset, help="default dsm_micro")
    what.add_argument("--data", type=_dataset_name, default=unset,
                      help=f"{', '.join(DATASETS)} (default cifar10)")
    what.add_argument("--data-dir", dest="data_dir", default=unset,
                      help="data folder (default $DSM_DATA_DIR); for imagenet: the folder "
                           "holding train/ and val/")
    what.add_argument("--download", action="store_true", default=unset,
                      help="download CIFAR-10 with torchvision if no local copy is found")
    what.add_argument("--n-train", dest="n_train", type=_positive_int, default=unset,
                      help="class-balanced training subset")
    what.add_argument("--n-test", dest="n_test", type=_positive_int, default=unset)
    what.add_argument("--img-size", dest="img_size", type=_positive_int, default=unset,
                      help="input size: ImageNet crops (224), spectral images (32), the canvas "
                           "of the mosaics (96) and of spectral-regions (64)")
    what.add_argument("--mixer", metavar="NAME", default=unset,
                      help="token mixer of every block: " + ", ".join(TOKEN_MIXERS)
                           + " (default: the model's)")
    what.add_argument("--mixer-option", dest="mixer_option", metavar="KEY=VALUE",
                      type=_assignment, action="append", default=unset,
                      help="an option of the token mixer, e.g. spectrum_length=8 or "
                           "gate=2sigmoid (repeatable); VALUE is read as a Python literal, "
                           "else as text")
    what.add_argument("--model-option", dest="model_option", metavar="KEY=VALUE",
                      type=_assignment, action="append", default=unset,
                      help="a keyword argument of the model, e.g. \"dims=(32, 64, 96, 128)\" "
                           "or layer_scale_init=1e-5 (repeatable)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=_positive_int, default=unset)
    opt.add_argument("--batch-size", dest="batch_size", type=_positive_int, default=unset,
                     help="global batch size (default 128)")
    opt.add_argument("--lr", type=_positive_float, default=unset, help="peak learning rate")
    opt.add_argument("--min-lr", dest="min_lr", type=_non_negative_float, default=unset)
    opt.add_argument("--warmup-epochs", dest="warmup_epochs", type=_non_negative_float,
                     default=unset)
    opt.add_argument("--weight-decay", dest="weight_decay", type=_non_negative_float,
                     default=unset)
    opt.add_argument("--grad-clip", dest="grad_clip", type=_non_negative_float, default=unset,
                     help="max gradient norm, 0 disables")
    opt.add_argument("--label-smoothing", dest="label_smoothing", type=_non_negative_float,
                     default=unset)
    opt.add_argument("--mixup", type=_non_negative_float, default=unset, help="MixUp alpha")
    opt.add_argument("--cutmix", type=_non_negative_float, default=unset, help="CutMix alpha")
    opt.add_argument("--randaugment", type=_non_negative_int, default=unset,
                     help="RandAugment magnitude (imagenet), 0 disables")
    opt.add_argument("--random-erasing", dest="random_erasing", type=_non_negative_float,
                     default=unset)
    opt.add_argument("--drop-path", dest="drop_path", type=_non_negative_float, default=unset)
    opt.add_argument("--ema", dest="ema_decay", type=_positive_float, default=unset,
                     help="EMA decay of the weights, e.g. 0.9998")
    run = parser.add_argument_group("running")
    run.add_argument("--amp", choices=AMP_MODES, default=unset,
                     help="auto: bf16 (or fp16) on CUDA, none on CPU")
    run.add_argument("--device", default=unset, help="cuda, cuda:1, mps or cpu")
    run.add_argument("--seed", type=int, default=unset)
    run.add_argument("--threads", dest="num_threads", type=_positive_int, default=unset,
                     help="torch CPU threads of this process (default: torch's choice); 1 on a "
                          "shared or busy CPU")
    run.add_argument("--workers", dest="num_workers", type=_non_negative_int, default=unset,
                     help="DataLoader workers (default 0: in-memory data needs none)")
    run.add_argument("--out", default=unset,
                     help="run folder: checkpoint.pt, log.jsonl, metrics.json "
                          "(default runs/<model>-<data>)")
    run.add_argument("--resume", nargs="?", const="auto", default=unset,
                     help="continue from <out>/checkpoint.pt, or from the given file")
    run.add_argument("--save-every", dest="save_every", type=_non_negative_int, default=unset,
                     help="checkpoint every N epochs (default 1; 0: only at the end/on a signal)")
    run.add_argument("--log-every", dest="log_every", type=_positive_int, default=unset)
    run.add_argument("--max-steps", dest="max_steps", type=_positive_int, default=unset,
                     help="stop (with a checkpoint) after N steps: for smoke tests")
    run.add_argument("--no-progress", dest="progress", action="store_false", default=unset)
    run.add_argument("--print-config", dest="print_config", action="store_true",
                     help="print the resolved configuration as JSON and exit")


def _recorded_flags(parser: argparse.ArgumentParser) -> dict[str, tuple[str, Any]]:
    """dest -> (flag, value it stores without an argument) of the options a run records: those
    whose default is ``SUPPRESS``, so they are in the namespace only when given."""
    return {action.dest: (action.option_strings[0], action.const)
            for action in parser._actions
            if action.option_strings and action.default is argparse.SUPPRESS
            and action.dest != "help"}


def command_line(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> str:
    """The ``python -m dsm_ref train ...`` options given in ``args`` (recorded in metrics.json).

    ``parser``: the one that made ``args`` (default: a fresh one from :func:`add_cli_arguments`).
    Parsing the result again gives the same configuration.
    """
    if parser is None:
        parser = argparse.ArgumentParser(add_help=False)
        add_cli_arguments(parser)
    flags = _recorded_flags(parser)
    parts = ["python -m dsm_ref train"]
    for dest, value in vars(args).items():
        if dest not in flags:
            continue
        flag, const = flags[dest]
        for item in value if isinstance(value, list) else [value]:  # repeated: --mixer-option
            if isinstance(item, bool) or item == const:
                parts.append(flag)  # a switch: --download, --no-progress, --resume
            else:
                parts.append(f"{flag} {shlex.quote(str(item))}")
    return " ".join(parts)


def _model_options(args: argparse.Namespace, preset: dict | None) -> dict | None:
    """``TrainConfig.model_options`` from the preset's, then ``--model-option``, ``--mixer`` and
    ``--mixer-option`` in that order; ``None`` when none of them is given (the default holds)."""
    given = [getattr(args, name, None) for name in ("model_option", "mixer", "mixer_option")]
    if preset is None and not any(given):
        return None
    options = dict(preset or {})
    options.update((item.key, item.value) for item in getattr(args, "model_option", []))
    if getattr(args, "mixer", None) is not None:
        options["token_mixer"] = args.mixer
    if getattr(args, "mixer_option", None):
        mixer_options = dict(options.get("mixer_options") or {})
        mixer_options.update((item.key, item.value) for item in args.mixer_option)
        options["mixer_options"] = mixer_options
    return options


def _resumed_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of the run that ``--resume`` continues (its checkpoint's config), or ``{}``
    when there is none yet. Where the run goes (``out``, ``resume``), how it runs (device,
    threads, workers, progress) and a ``max_steps`` stop are this invocation's."""
    resume = getattr(args, "resume", None)
    if not resume:
        return {}
    if resume == "auto":
        out = getattr(args, "out", None)
        if out is None:  # the default folder follows from the given model and data
            return {}
        path = Path(out) / CHECKPOINT_NAME
    else:
        path = Path(resume)
    if not path.is_file():
        return {}
    stored = dict(load_checkpoint(path, mmap=True)["config"])  # the config, not the tensors
    for key in ("out", "resume", "num_threads", "progress", "device", "num_workers", "max_steps"):
        stored.pop(key, None)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return {key: value for key, value in stored.items() if key in names}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Default :class:`TrainConfig` < the resumed run's settings (with ``--resume``) <
    ``--preset`` < the options given on the command line.

    So ``--out DIR --resume`` alone continues a run with the settings it started with (its
    epochs, schedule and model), and an option given beside it (``--epochs 200``) changes just
    that one.
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = _resumed_settings(args)
    if getattr(args, "preset", None):
        values.update(PRESETS[args.preset])
    values.update({k: v for k, v in vars(args).items() if k in names})
    if values.get("grad_clip") == 0:
        values["grad_clip"] = None
    if values.get("randaugment") == 0:
        values["randaugment"] = None
    model_options = _model_options(args, values.get("model_options"))
    if model_options is not None:
        values["model_options"] = model_options
    if "out" not in values:
        data = values.get("data", TrainConfig.data).replace("/", "-")
        values["out"] = str(Path("runs") / f"{values.get('model', TrainConfig.model)}-{data}")
    return TrainConfig(**values)


# What the last line of a run reports, per task: its name and the metric's key.
_HEADLINES = {"classify": ("top-1", "test_top1"), "segment": ("mIoU", "test_miou"),
              "detect": ("mAP", "test_map")}


def cli_main(args: argparse.Namespace) -> int:
    """``python -m dsm_ref train``: 0 done, 1 data/checkpoint error, 2 bad options,
    ``128 + signal`` when stopped by SIGINT/SIGTERM (after saving a checkpoint)."""
    try:
        config = config_from_args(args).validate()
    except (TypeError, ValueError) as err:
        print(f"dsm_ref train: error: {err}", file=sys.stderr)
        return 2
    except CheckpointError as err:  # the checkpoint --resume names cannot be read
        print(f"dsm_ref train: error: {err}", file=sys.stderr)
        return 1
    if getattr(args, "print_config", False):
        print(json.dumps(config.to_dict(), indent=1))
        return 0
    try:
        result = train(config, metadata={"command": command_line(args)})
    except (DataError, CheckpointError) as err:
        print(f"dsm_ref train: error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"dsm_ref train: error: {err}", file=sys.stderr)
        return 2
    if result.interrupted:
        return 128 + result.stop_signal if result.stop_signal else 0
    if int(os.environ.get("RANK", "0")) == 0:
        final = result.final
        name, key = _HEADLINES.get(config.task, _HEADLINES["classify"])
        print(f"done: test {name} {final.get(key, float('nan')):.2f}% after "
              f"{result.epochs_completed} epochs, {result.wall_time_s:.0f} s, "
              f"{result.train_images_per_s:.3g} train img/s; wrote {config.out}/metrics.json")
    return 0
