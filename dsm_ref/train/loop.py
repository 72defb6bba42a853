"""The run: :func:`train` builds what a :class:`~dsm_ref.train.TrainConfig` describes, restores
a checkpoint, runs the epochs (a step, the JSON-lines log, an evaluation per epoch), and stops
cleanly on SIGTERM/SIGINT or a step budget.

Files of a run (rank 0 only): ``<out>/log.jsonl`` (one JSON object per event: start or resume,
step, epoch, interrupted, end), ``<out>/checkpoint.pt`` and ``<out>/metrics.json`` (the
:meth:`~dsm_ref.train.TrainResult.summary`, with :func:`dsm_ref.provenance.provenance`).

Stopping under DDP: every rank must stop at the same step and take part in the checkpoint, so a
stop request is agreed by an all-reduce of a flag. Reading the flag (``.item()``) waits for the
device to finish the step, which costs the overlap of the next step's launch; the agreement runs
every :data:`STOP_CHECK_EVERY` steps and at every epoch end (the checkpoint boundary), not after
every step. A signal is then acted on at most ``STOP_CHECK_EVERY - 1`` steps late (a few seconds:
a cluster's grace time between SIGTERM and SIGKILL is longer), and all ranks still stop at the
same step, because whether a step checks depends only on the step count, which every rank
shares. ``max_steps`` needs no agreement: every rank counts the same steps. A single process
checks after every step, as before.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..data import Datasets, build_datasets, mixup_cutmix
from ..files import atomic_write_json
from ..provenance import provenance
from ..utils import seed_everything
from .build import build_model, build_optimizer, build_scheduler
from .checkpoint import (
    _RESUME_DEFAULTS,
    _RESUME_MUST_MATCH,
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    CheckpointError,
    _rng_state,
    _set_rng_state,
    load_checkpoint,
    save_checkpoint,
)
from .config import TrainConfig, TrainResult
from .runtime import ShardedSampler, _amp_dtype, _loader, _set_epoch, _setup_process
from .tasks import Task, make_task

__all__ = ["train", "STOP_CHECK_EVERY"]

# Steps between two agreements on a stop request under DDP (see the module docstring).
STOP_CHECK_EVERY = 10


# --- signals -------------------------------------------------------------------------------------

class _StopRequest:
    """SIGINT/SIGTERM set a flag the loop checks after every step (every
    :data:`STOP_CHECK_EVERY` steps under DDP); a second signal acts as usual (the original
    handler is back after the first one)."""

    def __init__(self, enabled: bool) -> None:
        self.signum: int | None = None
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __enter__(self) -> _StopRequest:
        if self.enabled:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# --- the loop ------------------------------------------------------------------------------------

class _JsonLines:
    """Appends one JSON object per line to ``path`` (rank 0 only; ``None`` writes nothing)."""

    def __init__(self, path: Path | None, append: bool) -> None:
        self.handle = open(path, "a" if append else "w") if path else None

    def write(self, event: str, **fields: Any) -> None:
        if self.handle:
            self.handle.write(json.dumps({"event": event, "time": round(time.time(), 3),
                                          **fields}) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle:
            self.handle.close()


@dataclass
class _Position:
    """Where the run is: completed epochs, steps into the current one, optimizer steps, and the
    running sums of the current epoch (so a resumed epoch reports the same training metrics)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    loss_sum: float = 0.0
    top1_sum: float = 0.0
    count: float = 0.0


class _Run:
    """One call of :func:`train`: builds everything, restores a checkpoint, runs the epochs."""

    def __init__(self, config: TrainConfig, model: nn.Module | None, datasets: Datasets | None,
                 on_step_end: Callable[[dict], None] | None,
                 on_epoch_end: Callable[[dict], None] | None, metadata: dict | None) -> None:
        self.config = config.validate()
        self.metadata = dict(metadata or {})
        self.on_step_end, self.on_epoch_end = on_step_end, on_epoch_end
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.proc = _setup_process(config.device)
        try:
            self._setup(config, model, datasets)
        except BaseException:
            self.close(finished=False)
            raise

    # setup ----------------------------------------------------------------------------------
    def _setup(self, config: TrainConfig, model: nn.Module | None,
               datasets: Datasets | None) -> None:
        self.amp_dtype = _amp_dtype(config.amp, self.proc.device)
        if config.batch_size % self.proc.world_size:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                             f"{self.proc.world_size} processes")
        self.local_batch = config.batch_size // self.proc.world_size
        self.out = Path(config.out) if config.out else None
        seed_everything(config.seed)
        self.data = datasets if datasets is not None else self._build_datasets()
        self.task: Task = make_task(config.task, self.data)
        self.base = model if model is not None else build_model(
            config, self.data.num_classes, self.data.img_size)
        self.base.to(self.proc.device)
        if self.proc.rank > 0:
            # Distinct drop-path / MixUp draws per process; DDP broadcasts rank 0's weights.
            seed_everything(config.seed + 7919 * self.proc.rank)
        self._build_loaders()
        self.optimizer = build_optimizer(self.base, config)
        self.scheduler = build_scheduler(self.optimizer, config, self.steps_per_epoch)
        scaler_device = "cuda" if self.proc.device.type == "cuda" else "cpu"
        self.scaler = torch.amp.GradScaler(scaler_device,
                                           enabled=self.amp_dtype == torch.float16)
        self.ema = self._build_ema()
        self.batch_transform = mixup_cutmix(self.data.num_classes, config.mixup, config.cutmix)
        self.position = _Position()
        self.history: list[dict] = []
        self.resumed_from = self._restore()
        self.model = self._wrap()
        self.trained_images, self.train_time = 0, 0.0

    def _build_datasets(self) -> Datasets:
        """Rank 0 first (it may decode or download), then the others from its cache."""
        config = self.config

        def build() -> Datasets:
            return build_datasets(
                config.data, root=config.data_dir, n_train=config.n_train, n_test=config.n_test,
                img_size=config.img_size, download=config.download, seed=config.seed,
                randaugment_magnitude=config.randaugment, random_erasing=config.random_erasing,
                progress=config.progress and self.proc.is_main)

        if not self.proc.distributed:
            return build()
        data = build() if self.proc.is_main else None
        dist.barrier()
        return data if data is not None else build()

    def _build_loaders(self) -> None:
        config, proc = self.config, self.proc
        self.train_sampler = ShardedSampler(len(self.data.train), rank=proc.rank,
                                            world_size=proc.world_size, seed=config.seed)
        self.test_sampler = ShardedSampler(len(self.data.test), rank=proc.rank,
                                           world_size=proc.world_size, shuffle=False,
                                           drop_last=False)
        common = dict(num_workers=config.num_workers, device=proc.device,
                      collate_fn=self.task.collate)
        self.train_loader = _loader(self.data.train, self.train_sampler, self.local_batch,
                                    train=True, **common)
        self.test_loader = _loader(self.data.test, self.test_sampler, self.local_batch,
                                   train=False, **common)
        self.steps_per_epoch = len(self.train_sampler) // self.local_batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"the training set ({len(self.data.train)} images) is smaller than "
                             f"one batch ({config.batch_size}); lower --batch-size")

    def _build_ema(self) -> torch.optim.swa_utils.AveragedModel | None:
        if self.config.ema_decay is None:
            return None
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        return AveragedModel(self.base, multi_avg_fn=get_ema_multi_avg_fn(self.config.ema_decay),
                             use_buffers=True)

    def _wrap(self) -> nn.Module:
        if not self.proc.distributed:
            return self.base
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.proc.device.index] if self.proc.device.type == "cuda" else None
        return DistributedDataParallel(self.base, device_ids=ids)

    # checkpoints ----------------------------------------------------------------------------
    def _checkpoint_path(self) -> Path | None:
        return self.out / CHECKPOINT_NAME if self.out else None

    def _resume_path(self) -> Path | None:
        resume = self.config.resume
        if not resume:
            return None
        if resume == "auto":
            path = self._checkpoint_path()
            return path if path is not None and path.is_file() else None
        return Path(resume)

    def _check_compatible(self, saved: dict, path: Path) -> None:
        mine = self.config.to_dict()
        for key in _RESUME_MUST_MATCH:
            theirs = saved.get(key, _RESUME_DEFAULTS.get(key))
            if theirs != mine.get(key):
                raise CheckpointError(f"{path} was made with {key}={theirs!r}; this run "
                                      f"has {key}={mine.get(key)!r}. Resume with the same "
                                      f"settings, or start a new run in another --out.")

    def _restore(self) -> Path | None:
        path = self._resume_path()
        if path is None:
            return None
        state = load_checkpoint(path)  # CPU; load_state_dict moves tensors to the device
        self._check_compatible(state["config"], path)
        try:
            self.base.load_state_dict(state["model"])
        except RuntimeError as err:
            raise CheckpointError(f"{path} holds weights of another architecture: {err}") from err
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.position = _Position(**state["position"])
        self.history = list(state["history"])
        rng = state["rng"]
        if len(rng) == self.proc.world_size:
            _set_rng_state(rng[self.proc.rank])
        else:  # another number of processes: a fresh, distinct stream per rank
            seed_everything(self.config.seed + 7919 * self.proc.rank + self.position.global_step)
        return path

    def _gather_rng(self) -> list[dict]:
        state = _rng_state()
        if not self.proc.distributed:
            return [state]
        states: list[Any] = [None] * self.proc.world_size
        dist.all_gather_object(states, state)
        return states

    def save(self) -> Path | None:
        """Checkpoint of the current position (all ranks call it: RNG states are gathered)."""
        rng = self._gather_rng()
        path = self._checkpoint_path()
        if path is None or not self.proc.is_main:
            return path
        state = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "model": self.base.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "position": dataclasses.asdict(self.position), "history": self.history,
            "config": self.config.to_dict(), "rng": rng, "world_size": self.proc.world_size,
            "torch_version": str(torch.__version__),
        }
        return save_checkpoint(path, state)

    # training -------------------------------------------------------------------------------
    def _stop_now(self, stop: _StopRequest, steps_this_call: int, *,
                  boundary: bool = False) -> bool:
        """Signal received or step budget spent, agreed by all processes.

        Under DDP the signal is agreed (an all-reduce and a host sync) only at a ``boundary``
        (an epoch end) and every :data:`STOP_CHECK_EVERY` steps: the same steps on every rank,
        so all ranks enter the same collectives and stop at the same step. The step budget is
        the same on every rank and needs no agreement.
        """
        limit = self.config.max_steps
        spent = limit is not None and steps_this_call >= limit
        if not self.proc.distributed:
            return stop.signum is not None or spent
        if spent:
            return True
        if not boundary and steps_this_call % STOP_CHECK_EVERY:
            return False
        flag = torch.tensor([float(stop.signum is not None)], device=self.proc.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _step(self, images: Any, labels: Any) -> tuple[Tensor, Tensor]:
        """One optimizer step on a local batch ``(b, 3, H, W)`` (a list of images for
        detection); returns the loss and the hits of the task's training accuracy (top-1 for
        classification)."""
        device, config = self.proc.device, self.config
        images, labels = self.task.to_device(images, labels, device)
        targets = labels
        if self.batch_transform is not None:
            images, targets = self.batch_transform(images, labels)
        loss, hits = self.task.step_loss(self.model, images, labels, targets, device,
                                         self.amp_dtype, config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.base.parameters(), config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.base)
        return loss.detach(), hits

    def _train_epoch(self, stop: _StopRequest, log: _JsonLines, progress_bar) -> bool:
        """Trains the rest of the current epoch; ``False`` if stopped part-way."""
        from tqdm.auto import tqdm

        pos, config = self.position, self.config
        self.train_sampler.set_epoch(pos.epoch, start=pos.step_in_epoch * self.local_batch)
        _set_epoch(self.data.train, pos.epoch)
        self.model.train()
        remaining = self.steps_per_epoch - pos.step_in_epoch
        bar = tqdm(total=self.steps_per_epoch, initial=pos.step_in_epoch, leave=False,
                   desc=f"epoch {pos.epoch + 1}/{config.epochs}", disable=not progress_bar)
        sums = torch.zeros(3, dtype=torch.float64, device=self.proc.device)
        start, batches = time.perf_counter(), iter(self.train_loader)
        for _ in range(remaining):
            images, labels = next(batches)
            loss, hits = self._step(images, labels)
            sums += torch.stack([loss.double() * len(labels), hits.double(),
                                 torch.tensor(float(len(labels)), device=self.proc.device,
                                              dtype=torch.float64)])
            pos.step_in_epoch += 1
            pos.global_step += 1
            self._steps_this_call += 1
            bar.update()
            self._after_step(loss, log, bar)
            if pos.step_in_epoch < self.steps_per_epoch and self._stop_now(
                    stop, self._steps_this_call):
                self._account(sums, start)
                bar.close()
                return False
        bar.close()
        self._account(sums, start)
        return True

    def _account(self, sums: Tensor, start: float) -> None:
        """Adds the epoch's sums (all-reduced over processes) and time to the position."""
        if self.proc.device.type == "cuda":
            torch.cuda.synchronize(self.proc.device)
        elapsed = time.perf_counter() - start
        if self.proc.distributed:
            dist.all_reduce(sums)
        loss_sum, top1, count = sums.tolist()
        self.position.loss_sum += loss_sum
        self.position.top1_sum += top1
        self.position.count += count
        self._epoch_time, self._epoch_images = elapsed, int(count)
        self.trained_images += int(count)
        self.train_time += elapsed

    def _after_step(self, loss: Tensor, log: _JsonLines, bar) -> None:
        pos = self.position
        every = pos.global_step % self.config.log_every == 0
        if not (every or self.on_step_end):
            return
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at epoch {pos.epoch + 1}, step "
                                     f"{pos.step_in_epoch}: lower --lr or check the data")
        row = {"epoch": pos.epoch + pos.step_in_epoch / self.steps_per_epoch,
               "step": pos.global_step, "loss": value, "lr": self.scheduler.get_last_lr()[0]}
        if every:
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{row['lr']:.2e}")
            log.write("step", **row)
        if self.on_step_end and self.proc.is_main:
            self.on_step_end(row)

    def _evaluate(self) -> dict[str, float]:
        device = self.proc.device
        models = [("test_", self.base)]
        if self.ema is not None:
            models.append(("ema_test_", self.ema.module))
        metrics: dict[str, float] = {}
        for prefix, model in models:
            model.eval()
            metrics.update(self.task.evaluate(model, self.test_loader, device, self.amp_dtype,
                                              self.proc.distributed, prefix))
            model.train()
        return metrics

    def _finish_epoch(self, log: _JsonLines, started: float) -> dict:
        pos = self.position
        count = max(pos.count, 1.0)
        row = {"epoch": pos.epoch + 1, "train_loss": pos.loss_sum / count}
        if self.task.train_metric:
            row[self.task.train_metric] = 100.0 * pos.top1_sum / count
        row.update({**self._evaluate(),
               "lr": self.scheduler.get_last_lr()[0],
               "train_images_per_s": self._epoch_images / max(self._epoch_time, 1e-9),
               "epoch_time_s": self._epoch_time, "elapsed_s": time.perf_counter() - started})
        if not math.isfinite(row["train_loss"]):
            raise FloatingPointError(f"training loss is {row['train_loss']} in epoch "
                                     f"{pos.epoch + 1}: lower --lr or check the data")
        self.history.append(row)
        self.position = _Position(epoch=pos.epoch + 1, global_step=pos.global_step)
        log.write("epoch", **row)
        return row

    def _print(self, message: str) -> None:
        if self.config.progress and self.proc.is_main:
            from tqdm.auto import tqdm

            tqdm.write(message)

    def run(self) -> TrainResult:
        config, proc = self.config, self.proc
        writes = self.out is not None and proc.is_main
        # Taken before the clock starts: probing the environment is not part of the run's time.
        origin = provenance(proc.device) if writes else None
        started = time.perf_counter()
        if writes:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.resumed_from is None and (self.out / CHECKPOINT_NAME).is_file():
                self._print(f"{self.out / CHECKPOINT_NAME} exists: starting a new run over it "
                            f"(pass --resume to continue it)")
        log = _JsonLines(self.out / "log.jsonl" if writes else None,
                         append=self.resumed_from is not None)
        log.write("resume" if self.resumed_from else "start", **self.metadata,
                  config=config.to_dict(),
                  position=dataclasses.asdict(self.position), world_size=proc.world_size,
                  data=repr(self.data), device=str(proc.device))
        if self.resumed_from:
            self._print(f"resumed from {self.resumed_from} at epoch {self.position.epoch + 1}, "
                        f"step {self.position.step_in_epoch}/{self.steps_per_epoch}")
        self._steps_this_call, interrupted, checkpoint, saved = 0, False, None, False
        with _StopRequest(config.handle_signals) as stop:
            while self.position.epoch < config.epochs:
                self._epoch_time, self._epoch_images, saved = 0.0, 0, False
                if not self._train_epoch(stop, log, config.progress and proc.is_main):
                    interrupted = True
                    break
                row = self._finish_epoch(log, started)
                self._print(self.task.format_row(row, config.epochs))
                if self.on_epoch_end and proc.is_main:
                    self.on_epoch_end(row)
                last = self.position.epoch == config.epochs
                saved = config.save_every and (last or self.position.epoch % config.save_every == 0)
                if saved:
                    checkpoint = self.save()
                if not last and self._stop_now(stop, self._steps_this_call,
                                               boundary=True):
                    interrupted = True
                    break
        if interrupted:
            checkpoint = checkpoint if saved else self.save()
            reason = f"signal {stop.signum}" if stop.signum else f"max_steps={config.max_steps}"
            log.write("interrupted", reason=reason, position=dataclasses.asdict(self.position))
            if checkpoint and proc.is_main:
                self._print(f"stopped ({reason}); saved {checkpoint}: continue with --resume")
        result = self._result(started, interrupted, checkpoint, stop.signum)
        result.provenance = origin
        log.write("end", final=result.final, wall_time_s=result.wall_time_s)
        log.close()
        if writes:
            summary = {**self.metadata, **result.summary()}
            atomic_write_json(self.out / "metrics.json", summary)
        return result

    def _result(self, started: float, interrupted: bool, checkpoint: Path | None,
                signum: int | None) -> TrainResult:
        final = dict(self.history[-1]) if self.history else {}
        headline = self.task.headline
        if self.history:
            final[f"best_{headline}"] = max(row[headline] for row in self.history)
        return TrainResult(
            model=self.base, ema_model=self.ema.module if self.ema is not None else None,
            config=self.config, history=self.history, final=final,
            wall_time_s=time.perf_counter() - started,
            train_images_per_s=self.trained_images / max(self.train_time, 1e-9),
            epochs_completed=self.position.epoch, global_step=self.position.global_step,
            interrupted=interrupted, num_params=sum(p.numel() for p in self.base.parameters()),
            checkpoint_path=str(checkpoint) if checkpoint else None, stop_signal=signum,
        )

    def close(self, finished: bool) -> None:
        if self.proc.owns_group and dist.is_initialized():
            if finished:
                # every rank reaches teardown before any tears down: a rank that destroyed the
                # group (and exited) while another was still finishing aborted that one at exit
                # now and then (gloo, 2 processes on a loaded 2-core machine: 1 run in 10). A
                # rank that failed does not wait: its peers then fail fast instead of hanging.
                dist.barrier()
            dist.destroy_process_group()


def train(
    config: TrainConfig,
    model: nn.Module | None = None,
    datasets: Datasets | None = None,
    *,
    on_step_end: Callable[[dict], None] | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    metadata: dict | None = None,
) -> TrainResult:
    """Trains ``model`` (default ``build_model(config, ...)``) on ``datasets`` (default
    ``build_datasets(config.data, ...)``) and returns a :class:`TrainResult`.

    ``datasets.train[i] -> ((3, H, W) float, int)`` for ``config.task="classify"``,
    ``((3, H, W) float, (H, W) int64 mask)`` for ``"segment"``, ``((3, H, W) float, {"boxes",
    "labels"})`` for ``"detect"`` (see :mod:`dsm_ref.train.tasks`); a ``set_epoch`` method, if
    present, is called every epoch. ``on_step_end(row)`` gets ``{"epoch", "step", "loss",
    "lr"}`` after each step (it costs a device sync), ``on_epoch_end(row)`` the epoch's
    metrics; both run on rank 0 only. ``metadata``: extra JSON-able fields for
    ``metrics.json`` and the log (the CLI records its command line). ``config.out=None``
    writes no files; ``config.progress=False`` prints nothing.
    Deterministic on CPU for a given ``config.seed`` (and thread count).
    """
    run = _Run(config, model, datasets, on_step_end, on_epoch_end, metadata)
    finished = False
    try:
        result = run.run()
        finished = True
        return result
    finally:
        run.close(finished=finished)

