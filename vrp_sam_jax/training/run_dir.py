"""A training run's work directory: written by the trainer, read back by `model_io.load`.

- `config.json`: the run's config (paths made absolute); resuming with a config that differs
  where it matters (`config.RESUME_KEYS`) fails with the list of differences.
- `checkpoints/<step>/`: the latest (last two kept) train state (step, trainable parameters,
  optimizer state) and the data stream position, saved every `checkpoint.every_steps` and at
  the end of each epoch, asynchronously (orbax `CheckpointManager`); a run resumes from the
  newest one.
- `best/<step>/`: the trainable parameters with the best validation mIoU (one kept).
- `frozen/`: the frozen parameters when they were randomly initialised (toy, tests).
- `backbone/`: otherwise, a copy of the frozen backbone (`init.backbone_checkpoint`), so the
  directory can be moved (to Drive, to GCS) without it; SAM stays in the official file
  `init.sam_checkpoint` names (`model_io.load(..., sam=)` when that file moved).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

import sam_port
from sam_port.params_dir import content_digest, restore_params_dir, save_params_dir
from vrp_sam_jax.config import from_json, resume_mismatches, to_json, vrp_sam_config
from vrp_sam_jax.errors import CheckpointError, CheckpointMismatchError, ConfigError, InputError
from vrp_sam_jax.models import LoadedModel, VRPSamConfig
from vrp_sam_jax.models.vrp_sam import abstract_params, init_encoder_params, init_params
from vrp_sam_jax.runtime import processes
from vrp_sam_jax.runtime.sharding import sum_over_processes
from vrp_sam_jax.storage.files import write_text_atomic
from vrp_sam_jax.storage.paths import AnyPath, absolute, as_path, move
from vrp_sam_jax.training import partition
from vrp_sam_jax.weights.backbones import META as BACKBONE_META
from vrp_sam_jax.weights.backbones import load_backbone, save_backbone

CONFIG = "config.json"
LOCK = ".lock"  # .lock.p<process>: who is training here (`hold`)
FROZEN = "frozen"
FROZEN_META = "frozen.json"
SPACE_MARGIN = 1.5  # free space a checkpoint needs, relative to its arrays' bytes
DAMAGED = "damaged_checkpoints"  # checkpoints found damaged, kept for inspection
BACKBONE = "backbone"  # the run's copy of its frozen backbone (a converted backbone dir)
PARTS = ("backbone", "encoder", "sam")


def is_run_dir(path: str | AnyPath) -> bool:
    return (as_path(path) / CONFIG).is_file()


@contextlib.contextmanager
def hold(workdir: AnyPath) -> Iterator[None]:
    """The work directory for this training alone, while the block runs: each of its
    processes takes an OS lock on `.lock.p<process index>` (the kernel drops it when the
    process ends, killed or not, so none is left held) and writes there who holds it. If any
    process cannot, every process stops with one line naming the holder: a second `train`
    on the directory would delete the first one's checkpoints in progress. On a bucket (a
    URL) there is no such lock and none is taken."""
    if not isinstance(workdir, Path):
        yield
        return
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{LOCK}.p{jax.process_index()}"
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            holder = None
        except BlockingIOError:
            holder = os.pread(handle, 512, 0).decode(errors="replace").strip() or "unknown"
        if sum_over_processes(np.array([holder is not None])).sum():
            raise InputError(
                f"{workdir}: another training is using this work directory ("
                + (holder or "another process of this run found it held")
                + "); wait for it to end or stop it, or use another --workdir")
        os.ftruncate(handle, 0)
        os.pwrite(handle, (f"process {jax.process_index()}: pid {os.getpid()} on "
                           f"{socket.gethostname()}, since "
                           f"{time.strftime('%Y-%m-%d %H:%M:%S')}").encode(), 0)
        yield
    finally:
        os.close(handle)  # the lock with it


# How a full or read-only disk shows in orbax's and TensorStore's errors (their own types,
# the OS's message inside) and in the errors their background threads log after it.
_STORAGE_FAILURES = {"No space left on device": errno.ENOSPC, "os_error_code='28'": errno.ENOSPC,
                     "Disk quota exceeded": errno.EDQUOT, "Read-only file system": errno.EROFS,
                     "os_error_code='30'": errno.EROFS}
_AFTERMATH = ("Event loop is closed", "exception was never retrieved", "sys.meta_path is None")


def _storage_failure(error: BaseException) -> int | None:
    """The errno of a full or read-only disk behind `error` (or its causes), else None."""
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, OSError) and error.errno in set(_STORAGE_FAILURES.values()):
            return error.errno
        for marker, number in _STORAGE_FAILURES.items():
            if marker in str(error):
                return number
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


class _QuietAfterStorageFailure(logging.Filter):
    """Drops the log records that a full disk makes orbax's threads and asyncio write, one
    per array and task, after the one line that reports it."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        return not any(m in text for m in (*_STORAGE_FAILURES, *_AFTERMATH))


_QUIET = _QuietAfterStorageFailure()


@contextlib.contextmanager
def storage_errors(workdir: AnyPath) -> Iterator[None]:
    """A full or read-only disk under the work directory, wherever it is noticed (orbax's
    background writes included), becomes one OSError naming `workdir` (the command line's
    one line: resume with the same command once there is space); the records the failure
    makes other threads log are dropped."""
    for name in ("absl", "asyncio"):  # where orbax's threads and asyncio log
        logging.getLogger(name).addFilter(_QUIET)  # once: a filter is added only once
    try:
        yield
    except Exception as error:
        number = _storage_failure(error)
        if number is None or (isinstance(error, OSError) and error.filename):
            raise  # not the disk, or already one line naming the file
        raise OSError(number, f"{os.strerror(number)} while training (the same command "
                      "resumes from the last complete checkpoint)", str(workdir)) from None
    # the filter stays: orbax's threads may log the failure again until the process ends


def write_config(workdir: AnyPath, config: ml_collections.ConfigDict) -> None:
    """Store the run's config (atomically), or check it against the stored one when
    resuming."""
    path = workdir / CONFIG
    if path.is_file():  # resuming: the stored config stays as it is
        saved = json.loads(to_json(read_config(workdir)))
        problems = resume_mismatches(saved, config)
        if problems:
            raise CheckpointMismatchError(
                f"{workdir}: its checkpoints come from a different config; use a new "
                "--workdir or the same settings: " + "; ".join(problems))
        return
    if processes.is_writer():
        workdir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, to_json(config))


def read_config(workdir: str | AnyPath) -> ml_collections.ConfigDict:
    path = as_path(workdir) / CONFIG
    if not path.is_file():
        raise InputError(f"{workdir}: not a training work directory (no {CONFIG})")
    return from_json(path.read_bytes(), str(path))


class Checkpoints:
    """The latest and the best checkpoints of one run of the model `model_config`. Each
    records, beside the arrays, the model's architecture and the arrays' content checksum: a
    checkpoint of another architecture (a copied directory, an edited `config.json`) is
    refused, one whose arrays changed since they were written is damaged."""

    def __init__(self, workdir: str | AnyPath, model_config: VRPSamConfig, async_save: bool = True,
                 keep: int = 2):
        self.workdir = absolute(workdir)
        self.model_config = model_config
        # two managers save at once (a validation step): each needs its own barrier names,
        # or with several processes their finalisations meet at one barrier and fail
        self.latest = ocp.CheckpointManager(
            self.workdir / "checkpoints",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=async_save,
                multiprocessing_options=ocp.options.MultiprocessingOptions(
                    barrier_sync_key_prefix="latest")),
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "position": ocp.JsonCheckpointHandler()})
        self.best = ocp.CheckpointManager(
            self.workdir / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, best_fn=lambda m: m["miou"], best_mode="max",
                keep_checkpoints_without_metrics=False, enable_async_checkpointing=async_save,
                multiprocessing_options=ocp.options.MultiprocessingOptions(
                    barrier_sync_key_prefix="best")),
            # orbax writes `metrics` itself (the best_fn's values): the record is its own item
            item_names=("params", "metrics", "record"))

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def _check_space(self, arrays) -> None:
        """Refuse to start a save the disk cannot hold (an OSError naming the work
        directory): orbax would find out array by array in its background threads, each
        logging the failure, and leave a partial step behind."""
        if not isinstance(self.workdir, Path):  # a bucket: no disk to fill
            return
        needed = sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(arrays))
        free = shutil.disk_usage(self.workdir).free
        # every process takes the same branch (saves are collective), each seeing its disk
        if sum_over_processes(np.array([free < SPACE_MARGIN * needed + (1 << 20)])).sum():
            raise OSError(errno.ENOSPC, f"No space left on device for the next checkpoint "
                          f"({needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free; the "
                          "same command resumes from the last complete one)",
                          str(self.workdir))

    def _record(self, arrays) -> dict:
        return {"model": self.model_config.architecture(), "digest": content_digest(arrays)}

    def _check(self, where: str, record: dict, arrays=None) -> None:
        """Refuse a checkpoint of another architecture (CheckpointMismatchError) and, given
        its restored `arrays`, one whose content changed (CheckpointError). Checkpoints from
        before the record was kept pass."""
        stored = record.get("model")
        if stored is not None and stored != self.model_config.architecture():
            ours = self.model_config.architecture()
            differ = [f"{k}={stored.get(k)!r} there, {ours[k]!r} in {CONFIG}" for k in ours
                      if stored.get(k) != ours[k]]
            raise CheckpointMismatchError(f"{where}: written by a model of another "
                                          f"architecture ({'; '.join(differ)})")
        if arrays is not None and record.get("digest") not in (None, content_digest(arrays)):
            raise CheckpointError(f"{where}: its arrays differ from the checksum recorded "
                                  "when it was written (damaged or edited)")

    def save(self, step: int, state, position: dict, force: bool = False) -> None:
        if not (force or self.latest.should_save(step)):
            return
        self._check_space(state)
        position = {**position, **self._record(state)}
        self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), position=ocp.args.JsonSave(position)),
            force=force)

    def restore(self, abstract_state) -> tuple[object, dict]:
        """The newest intact checkpoint, shaped and sharded like `abstract_state`. A damaged
        newer one (not a kill: orbax never finalises those) is set aside under
        `damaged_checkpoints/`, with a warning, and the one before it is used."""
        steps = sorted(self.latest.all_steps(), reverse=True)
        first_error = None
        for step in steps:
            where = str(self.workdir / "checkpoints" / str(step))
            try:
                position = self.latest.restore(step, args=ocp.args.Composite(
                    position=ocp.args.JsonRestore()))["position"]
            except Exception:  # noqa: BLE001 - a damaged record: the restore below says how
                position = {}
            self._check(where, dict(position))  # another model's: refused, never set aside
            try:
                restored = self.latest.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    position=ocp.args.JsonRestore()))
                self._check(where, dict(restored["position"]), restored["state"])
            except Exception as e:  # damage shows as many exception types
                first_error = first_error or e
                if step == steps[-1]:
                    break
                self._set_aside(step, e)
                continue
            return restored["state"], dict(restored["position"])
        raise CheckpointMismatchError(
            f"{self.workdir / 'checkpoints'}: no checkpoint matches the model and trainable "
            f"parts of this config, or all are damaged ({str(first_error)[:300]})"
        ) from first_error

    def _set_aside(self, step: int, error: Exception) -> None:
        damaged = self.workdir / "checkpoints" / str(step)
        kept = self.workdir / DAMAGED / str(step)
        print(f"vrp-sam: warning: {damaged} is damaged ({type(error).__name__}: "
              f"{str(error)[:200]}); resuming from an earlier checkpoint, the damaged one "
              f"is kept as {kept}", file=sys.stderr, flush=True)
        if processes.is_writer():
            move(damaged, kept)
        processes.barrier(f"checkpoint {step} set aside")
        self.latest.reload()

    def save_best(self, step: int, trainable: dict, metrics: dict) -> bool:
        """Keep `trainable` if `metrics["miou"]` is the best so far. A step validated before
        (trained again after falling back from a damaged checkpoint) is kept as it was."""
        if step in self.best.all_steps():
            return False
        scalar = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        self._check_space(trainable)
        return self.best.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(trainable), metrics=ocp.args.JsonSave(scalar),
            record=ocp.args.JsonSave(self._record(trainable))),
            metrics=scalar, force=True)

    def best_step(self) -> int | None:
        return self.best.best_step()

    def restore_best(self, abstract_trainable, step: int | None = None) -> tuple[dict, dict]:
        step = self.best.best_step() if step is None else step
        if step is None:
            raise CheckpointMismatchError(f"{self.workdir / 'best'}: no best checkpoint yet")
        where = str(self.workdir / "best" / str(step))
        try:
            record = dict(self.best.restore(step, args=ocp.args.Composite(
                record=ocp.args.JsonRestore()))["record"])
        except Exception:  # noqa: BLE001 - a checkpoint from before the record was kept
            record = {}
        self._check(where, record)
        restored = self.best.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_trainable), metrics=ocp.args.JsonRestore()))
        self._check(where, record, restored["params"])
        return restored["params"], dict(restored["metrics"])

    def restore_trained(self, which: str | int, abstract_trainable) -> tuple[dict, dict]:
        """The trainable parameters of checkpoint `which` ("best", "latest" or a step) and
        {"which", "step", "directory", "metrics"}. "best" is the latest until validation
        has run once."""
        best, latest = self.best.all_steps(), self.latest.all_steps()
        if not best and not latest:
            raise InputError(f"{self.workdir}: no checkpoint yet")
        if which == "best" and best:
            step, kind = self.best.best_step(), "best"
        elif which in ("best", "latest"):
            step, kind = self.latest.latest_step(), "latest"
        elif isinstance(which, int) and which in best:
            step, kind = which, "best"
        elif isinstance(which, int) and which in latest:
            step, kind = which, "latest"
        else:
            raise InputError(f"{self.workdir}: no checkpoint {which!r}; there are steps "
                             f"{sorted(set(best) | set(latest))} (or best, latest)")
        if kind == "best":
            trainable, metrics = self.restore_best(abstract_trainable, step)
            return trainable, {"which": which, "step": step, "directory": "best",
                               "metrics": metrics}
        # the whole state, placed like `abstract_trainable` whatever devices wrote it (a pod
        # slice's run read on one machine)
        place = jax.tree.leaves(abstract_trainable)[0].sharding
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=place),
                              self.latest.item_metadata(step)["state"])
        where = str(self.workdir / "checkpoints" / str(step))
        record = dict(self.latest.restore(step, args=ocp.args.Composite(
            position=ocp.args.JsonRestore()))["position"])
        self._check(where, record)
        restored = self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))
        self._check(where, record, restored["state"])
        trainable = jax.tree.map(lambda a, x: jax.device_put(a, x.sharding),
                                 dict(restored["state"]["trainable"]), abstract_trainable)
        return trainable, {"which": which, "step": step, "directory": "checkpoints",
                           "metrics": {}}

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def initial_params(config: ml_collections.ConfigDict, model_config: VRPSamConfig, workdir: AnyPath,
                   *, training: bool = False, sam: str | Path | None = None
                   ) -> tuple[dict, dict]:
    """(params, origin of each part) before training. Random weights (`init.random`: toy,
    tests) are kept under `workdir/frozen`, so a resumed run or an evaluation sees the same
    ones. Otherwise SAM comes from `init.sam_checkpoint` (or `sam`), the backbone from the
    run's copy `workdir/backbone` (written at the start of training, so the work directory
    travels without the backbone file), and the VRP encoder is freshly initialised. Only
    `training` writes: reading a run never changes it."""
    workdir = absolute(workdir)
    frozen_dir = workdir / FROZEN
    if config.init.random:
        origin = {part: f"{frozen_dir} (random, seed {config.init.seed})" for part in PARTS}
        if (frozen_dir / FROZEN_META).is_file():
            params = restore_params_dir(frozen_dir, abstract_params(model_config), "initial")
        elif not training:
            raise InputError(f"{workdir}: no {FROZEN}/{FROZEN_META}: the run's random initial "
                             "weights are missing")
        else:
            params = init_params(model_config, config.init.seed)  # all processes save together
            save_params_dir(frozen_dir, params, FROZEN_META, {"seed": config.init.seed})
        if sam is not None:
            params = {**params, "sam": sam_port.load_sam(sam, model_config.sam_type).params}
            origin["sam"] = str(Path(sam).absolute())
        return params, origin
    if not config.init.sam_checkpoint or not config.init.backbone_checkpoint:
        raise ConfigError("set config.init.sam_checkpoint and config.init.backbone_checkpoint "
                          "(official SAM .pth, backbone weights), or init.random=True")
    sam = sam if sam is not None else config.init.sam_checkpoint
    copy = workdir / BACKBONE
    if (copy / BACKBONE_META).is_file():
        _, backbone = load_backbone(copy, model_config.backbone)
        backbone_origin = f"{copy} (copy of {config.init.backbone_checkpoint})"
    else:
        _, backbone = load_backbone(config.init.backbone_checkpoint, model_config.backbone)
        backbone_origin = str(config.init.backbone_checkpoint)
        if training:  # all processes save together
            save_backbone(model_config.backbone, backbone, copy)
    encoder = init_encoder_params(model_config, config.init.seed)
    origin = {"backbone": backbone_origin, "encoder": f"random (seed {config.init.seed})",
              "sam": str(Path(sam).absolute())}
    return {"backbone": backbone, "encoder": encoder,
            "sam": sam_port.load_sam(sam, model_config.sam_type).params}, origin


def _trained_origin(part: str, prefixes: tuple[str, ...], before: str, checkpoint: str) -> str:
    touched = [p for p in prefixes if p == part or p.startswith(part + "/")]
    if not touched:
        return before
    if part in touched:
        return checkpoint
    return f"{before}, with {', '.join(touched)} from {checkpoint}"


def restore(workdir: str | AnyPath, which: str | int = "best", sam: str | Path | None = None
            ) -> tuple[ml_collections.ConfigDict, LoadedModel]:
    """A run's config and its model: the trained parameters of the best checkpoint (the
    latest when validation has not run yet), the latest, or the checkpoint of step `which`,
    over the frozen parts; `sam` replaces the SAM the run names (an official file moved)."""
    workdir = absolute(workdir)
    config = read_config(workdir)
    model_config = vrp_sam_config(config)
    params, origin = initial_params(config, model_config, workdir, sam=sam)
    prefixes = tuple(config.train.trainable)
    abstract_trainable, _ = partition.split(abstract_params(model_config), prefixes)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract_trainable = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract_trainable)
    checkpoints = Checkpoints(workdir, model_config, async_save=False)
    try:
        trainable, info = checkpoints.restore_trained(which, abstract_trainable)
    except (InputError, CheckpointError):
        raise
    except Exception as e:  # noqa: BLE001 - damaged files fail in orbax and TensorStore alike
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise CheckpointError(f"{workdir}: checkpoint {which!r} cannot be read, its files "
                              f"are damaged or incomplete ({type(e).__name__}: {first}); "
                              "choose another with --which") from e
    finally:
        checkpoints.close()
    where = f"{workdir}/{info['directory']}/{info['step']}"
    origin = {part: _trained_origin(part, prefixes, origin[part], where) for part in PARTS}
    trained_sam = any(p == "sam" or p.startswith("sam/") for p in prefixes)
    info = {"kind": "run", "workdir": str(workdir), **info, "trained": list(prefixes),
            "trained_on": {"benchmark": config.data.benchmark, "fold": config.data.fold,
                           "shots": config.data.shots, "condition": config.data.condition}}
    sam_path = sam if sam is not None else config.init.sam_checkpoint
    sam_file = (None if trained_sam or (config.init.random and sam is None)
                or not Path(sam_path).is_file() else str(Path(sam_path).absolute()))
    return config, LoadedModel(model_config, partition.merge(trainable, params), origin, info,
                               sam_file)
