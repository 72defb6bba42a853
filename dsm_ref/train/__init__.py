"""One training loop for the notebooks, the CLI and the ablation runner. Defined in notebook 05.

``train(TrainConfig(...)) -> TrainResult``: AdamW with decoupled weight decay on matrices only
(:func:`dsm_ref.models.weight_decay_groups`), a per-step cosine schedule with linear warmup,
gradient clipping, AMP (bf16 or fp16 on CUDA), an optional EMA of the weights, the model's own
drop-path, and an evaluation after every epoch. Metrics (loss, top-1/top-5 in percent, images/s)
go to ``<out>/log.jsonl`` and a summary to ``<out>/metrics.json``.

The same loop trains dense models: ``TrainConfig(task="segment")`` (a Semantic FPN, per-pixel
cross-entropy, ``test_miou`` and ``test_pixel_accuracy``) and ``task="detect"`` (a torchvision
detector, the sum of its losses, ``test_map`` and ``test_map_50``), on a dataset of that task
(``mosaic-segment/cifar10``, ``spectral-regions``, ``mosaic-detect/cifar10``); what differs per
task lives in :mod:`.tasks`.

Checkpoints (``<out>/checkpoint.pt``) hold the model, optimizer, scheduler, grad scaler, EMA,
every process's RNG states, the epoch and the step within it; they are written to a temporary
file and renamed, so a writer killed half-way leaves the previous checkpoint intact, and read
with ``weights_only=True``. SIGTERM/SIGINT finish the current step, save, and stop; ``resume``
continues, and on CPU with the same seed ends with the same weights as an uninterrupted run:
the batch order is a function of ``(seed, epoch)``, the augmentation of ``(seed, epoch, index)``
(:mod:`dsm_ref.data`), and the RNG that drop-path and MixUp draw from is restored.

Several processes: run under ``torchrun`` (``WORLD_SIZE > 1``) and the loop joins a process group
(NCCL on GPU, gloo on CPU), wraps the model in DistributedDataParallel and gives each process
``batch_size / world_size`` samples of every global batch (:class:`ShardedSampler`); only rank 0
writes files. Same global batch, same mean gradient: a 2-process run matches a 1-process run
(``tests/test_train.py`` checks it with gloo on CPU).

``python -m dsm_ref train --model dsm_micro --data cifar10 --epochs 5 --out runs/x`` trains from
the command line (:mod:`dsm_ref.commands.train`); ``--preset imagenet-dsm_s`` holds the ImageNet
recipe (see :data:`PRESETS`).

One job per module:

- :mod:`.config`: :class:`TrainConfig` (and the check of its model options), :data:`PRESETS`,
  :class:`TrainResult`;
- :mod:`.build`: the model (a classifier or a dense model), optimizer and lr schedule a config
  describes;
- :mod:`.tasks`: what differs between classification, segmentation and detection (the batch on
  the device, the loss, the test metrics, the printed line);
- :mod:`.runtime`: process group and device, AMP, :class:`ShardedSampler` and the loaders;
- :mod:`.checkpoint`: checkpoint files and RNG states;
- :mod:`.evaluation`: :func:`evaluate`, :func:`predict`, :func:`confusion_matrix`;
- :mod:`.loop`: :func:`train`, the stop request, the JSON-lines log.
"""

from .build import (
    build_dense_model,
    build_model,
    build_optimizer,
    build_scheduler,
    cosine_lr_factor,
)
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from .config import AMP_MODES, PRESETS, TASKS, TrainConfig, TrainResult, model_option_names
from .evaluation import confusion_matrix, evaluate, predict
from .loop import STOP_CHECK_EVERY, train
from .runtime import ShardedSampler

__all__ = [
    "TrainConfig",
    "TrainResult",
    "PRESETS",
    "AMP_MODES",
    "TASKS",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CHECKPOINT_NAME",
    "STOP_CHECK_EVERY",
    "CheckpointError",
    "ShardedSampler",
    "train",
    "evaluate",
    "predict",
    "confusion_matrix",
    "build_model",
    "build_dense_model",
    "build_optimizer",
    "build_scheduler",
    "cosine_lr_factor",
    "save_checkpoint",
    "load_checkpoint",
    "model_option_names",
]
