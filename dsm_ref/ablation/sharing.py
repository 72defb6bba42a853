"""Many runs through one cache that several processes can share: finished runs are read from
``<out>/runs``, a run is claimed by one process at a time, and a killed holder's run is taken
over and resumed from its checkpoint (one thread each on a small CPU)."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from ..files import atomic_write_json
from .run import pretrained_weights_path, run_arm, run_path, weights_path
from .studies import Arm, Budget

__all__ = ["run_all"]

_CLAIM_POLL_S = 10.0


def run_all(jobs: list[tuple[Arm, Budget, int]], dataset: str, out: Path, *, device: str,
             progress: bool, desc: str, save_weights_for_seeds: tuple[int, ...] = ()
             ) -> tuple[list[dict], int]:
    """Each job's run record (in job order) and how many were trained now; a finished run is
    read from ``<out>/runs``, and runs another process has claimed are waited for, so several
    processes can share one study (one thread each on a small CPU). A pretrained arm's run
    starts from its pretraining run's weights, which must be stored already
    (:func:`~dsm_ref.ablation.run.pretrained_weights_path`)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, leave=False)
    records: dict[int, dict] = {}
    trained = 0
    pending = list(range(len(jobs)))
    while pending:
        deferred = []
        for index in pending:
            arm, budget, seed = jobs[index]
            path = run_path(out, dataset, arm, budget, seed)
            if not path.exists():
                with _claim(path) as claimed:
                    if not claimed:
                        deferred.append(index)
                        continue
                    if not path.exists():  # another process may have finished it meanwhile
                        record = run_arm(
                            arm, dataset, seed, budget, device=device,
                            work_dir=out / "work" / dataset / path.stem,
                            weights_path=(weights_path(out, dataset, arm, budget, seed)
                                          if seed in save_weights_for_seeds else None),
                            pretrained_path=(None if arm.pretrain is None else
                                             pretrained_weights_path(out, dataset, arm, budget)))
                        atomic_write_json(path, record)
                        trained += 1
            records[index] = {**json.loads(path.read_text()), "arm": arm.name}
            bar.update()
            metric = records[index].get("metric", "test_top1")
            bar.set_postfix(arm=arm.name, seed=seed,
                            **{metric.removeprefix("test_"): f"{records[index][metric]:.1f}"})
        if len(deferred) == len(pending):
            time.sleep(_CLAIM_POLL_S)
        pending = deferred
    bar.close()
    return [records[i] for i in range(len(jobs))], trained


@contextmanager
def _claim(run_path: Path):
    """Claims one run for this process with an exclusive ``<run>.claim`` file holding its pid,
    so several processes can work through one study; yields whether the claim succeeded. A
    claim whose process is gone (killed) is taken over: the run resumes from its checkpoint."""
    claim = run_path.with_suffix(".claim")
    claim.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(claim.read_text() or "0")
                fresh = time.time() - claim.stat().st_mtime < 30  # its pid may not be written yet
            except (OSError, ValueError):
                holder, fresh = 0, True
            if (holder and _alive(holder)) or (not holder and fresh):
                yield False
                return
            claim.unlink(missing_ok=True)  # a dead holder: take its run over
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        try:
            yield True
        finally:
            claim.unlink(missing_ok=True)
        return
    yield False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
