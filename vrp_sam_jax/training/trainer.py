"""`vrp-sam train`: the training loop (docs/COMPUTATION.md §6) over a device mesh.

Per step: this host loads its rows of the global batch (episodes of the epoch's stream), the
rows become one global array split over the mesh's data axis, and one jitted step updates the
trainable parameters. The stream is a pure function of (seed, epoch, batch), so a run killed
at any point resumes from its newest checkpoint at the same stream position and reaches the
same parameters as an uninterrupted run, with one process or several (docs/LAUNCH.md).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from vrp_sam_jax.config import absolute_paths, check_values, vrp_sam_config
from vrp_sam_jax.data import protocols, splits
from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions
from vrp_sam_jax.data.roots import make_source
from vrp_sam_jax.errors import ConfigError
from vrp_sam_jax.evaluation import figures
from vrp_sam_jax.evaluation.episodes import evaluation_options, run_episodes
from vrp_sam_jax.evaluation.step import jit_eval_step
from vrp_sam_jax.models import VRPSamConfig
from vrp_sam_jax.models.vrp_sam import abstract_params
from vrp_sam_jax.runtime import processes, sharding
from vrp_sam_jax.storage.paths import AnyPath, absolute, as_path
from vrp_sam_jax.training import embedding_cache, partition
from vrp_sam_jax.training import step as step_lib
from vrp_sam_jax.training.logger import MetricLogger
from vrp_sam_jax.training.run_dir import (
    Checkpoints,
    hold,
    initial_params,
    storage_errors,
    write_config,
)

VALIDATION_FIGURES = 4  # validation episodes drawn into TensorBoard, next to the curves


@dataclasses.dataclass
class Run:
    """Everything a training run holds between steps."""

    config: ml_collections.ConfigDict
    model_config: VRPSamConfig
    mesh: jax.sharding.Mesh
    state: step_lib.TrainState
    frozen: dict
    steps_per_epoch: int
    total_steps: int
    deadline: float | None = None  # time.monotonic() after which the run stops, resumable
    on_step: Callable[[int, int], None] | None = None  # (step reached, total steps)


def _steps_per_epoch(config: ml_collections.ConfigDict, available: int) -> int:
    batch = config.train.global_batch
    full = available // batch
    if full < 1:
        raise ConfigError(f"an epoch has {available} episodes, fewer than one global batch "
                         f"({batch})")
    wanted = config.train.steps_per_epoch or full
    if wanted > full:
        raise ConfigError(f"train.steps_per_epoch={wanted} needs {wanted * batch} episodes per "
                         f"epoch; the stream has {available}")
    return wanted


def train(config: ml_collections.ConfigDict, workdir: str | AnyPath, *,
          progress: bool = True, stop_after_seconds: float | None = None,
          on_step: Callable[[int, int], None] | None = None) -> dict:
    """Train (or resume) in `workdir`; returns the last validation metrics, the steps reached,
    the step it resumed from and timings. `stop_after_seconds`: stop at the first logging
    step (or epoch end) past that time, counted from this call, with a checkpoint there and
    `"stopped": True`; calling again continues (a Colab session, a preemptible job).
    `on_step(step, total_steps)` is called after every step (the app's progress)."""
    deadline = None if stop_after_seconds is None else time.monotonic() + stop_after_seconds
    workdir = absolute(workdir)
    progress = progress and processes.is_writer()
    config = check_values(absolute_paths(config), "config")
    model_config = vrp_sam_config(config)
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
    sharding.check_batch(config.train.global_batch, mesh)
    data = config.data
    source = make_source(data.benchmark, data.root or None, data.shots)
    training_lists = protocols.training_lists(source, data.benchmark, data.fold)

    def epoch_episodes(epoch: int) -> list[protocols.Episode]:
        return protocols.training_episodes(data.benchmark, data.fold, data.shots, epoch,
                                           config.train.seed, classwise=training_lists)

    steps_per_epoch = _steps_per_epoch(config, len(epoch_episodes(0)))
    _check_trainable(config, model_config)
    write_config(workdir, config)  # the whole config checked: nothing written before
    processes.barrier("run directory checked")  # all see the same files from here on
    with hold(workdir), storage_errors(workdir):  # one training at a time in a directory
        total_steps = steps_per_epoch * config.train.epochs
        optimizer = step_lib.make_optimizer(config.train.lr, total_steps,
                                            config.train.weight_decay, config.train.b1,
                                            config.train.b2)
        params, _ = initial_params(config, model_config, workdir, training=True)
        trainable, frozen = partition.split(params, tuple(config.train.trainable))
        replicated = sharding.replicated(mesh)
        frozen_sharding = sharding.param_shardings(mesh, frozen)
        state = sharding.put(step_lib.init_state(trainable, optimizer), replicated)
        frozen = sharding.put(frozen, frozen_sharding)
        checkpoints = Checkpoints(workdir, model_config, config.checkpoint.async_save)
        if checkpoints.latest_step() is not None:
            abstract = jax.tree.map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
            state, _ = checkpoints.restore(abstract)
        run = Run(config, model_config, mesh, state, frozen, steps_per_epoch, total_steps, deadline,
                  on_step)
        cache = _embedding_cache(run, params, source, training_lists, workdir, progress)
        logger = MetricLogger(workdir)
        try:
            return _loop(run, optimizer, source, epoch_episodes, checkpoints, logger, cache,
                         progress)
        finally:
            checkpoints.wait()
            checkpoints.close()
            logger.close()


def validation_episodes(config: ml_collections.ConfigDict, source) -> list[protocols.Episode]:
    d = config.data
    return protocols.episodes(d.benchmark, d.fold, d.shots, d.val_protocol, d.val_episodes,
                              classwise=protocols.dataset_lists(source, d.val_protocol))


def trains_sam_image_encoder(trainable: tuple[str, ...]) -> bool:
    """Whether the `train.trainable` paths include SAM's image encoder (then its embeddings
    cannot come from a cache)."""
    return any(p in ("sam", "sam/image_encoder") or p.startswith("sam/image_encoder/")
               for p in trainable)


def _check_trainable(config: ml_collections.ConfigDict, model_config: VRPSamConfig) -> None:
    """`train.trainable` names parameters of the model, and cached SAM embeddings are only
    asked for with SAM's image encoder frozen."""
    try:
        partition.split(abstract_params(model_config), tuple(config.train.trainable))
    except ValueError as e:
        raise ConfigError(f"train.trainable: {e}") from e
    if config.cache.embeddings and trains_sam_image_encoder(config.train.trainable):
        raise ConfigError("cache.embeddings=True, but SAM's image encoder is trained "
                          f"(train.trainable={tuple(config.train.trainable)}): set "
                          "cache.embeddings=False or freeze it")


def _embedding_cache(run: Run, params: dict, source, training_lists, workdir: AnyPath,
                     progress: bool):
    config = run.config
    if not config.cache.embeddings:
        return None
    names = (set(protocols.training_images(config.data.benchmark, config.data.fold,
                                           training_lists))
             | {e.query for e in validation_episodes(config, source)})
    root = as_path(config.cache.dir) if config.cache.dir else (
        as_path(config.data.root) / "vrp_sam_embedding_cache" if config.data.root
        else workdir / "embedding_cache")
    cache = embedding_cache.build(root, names, source, run.model_config, params["sam"],
                                  dtype=config.cache.dtype, progress=progress,
                                  shared=config.cache.shared)
    if jax.process_count() > 1 and config.cache.shared:  # read what all of them wrote
        processes.barrier("embedding cache written")
        cache = embedding_cache.EmbeddingCache(cache.directory)
    return cache


def _loop(run: Run, optimizer, source, epoch_episodes, checkpoints: Checkpoints,
          logger: MetricLogger, cache, progress: bool) -> dict:
    config, mesh = run.config, run.mesh
    replicated = sharding.replicated(mesh)
    frozen_sharding = jax.tree.map(lambda x: x.sharding, run.frozen)
    train_fn = step_lib.jit_train_step(run.model_config, optimizer, replicated, frozen_sharding,
                                       sharding.batch_sharding(mesh), replicated,
                                       loss=config.train.loss)
    eval_step = jit_eval_step(run.model_config, mesh)
    schedule = step_lib.make_schedule(config.train.lr, run.total_steps)
    rng = jax.random.key(config.train.seed)
    workers = config.data.workers or None
    state, step = run.state, int(run.state.step)
    resumed_from = step
    embeddings = cache.get if cache is not None else None
    last_metrics: dict = {}
    start_time = time.perf_counter()

    def finish(stopped: bool) -> dict:
        return {**last_metrics, "steps": step, "total_steps": run.total_steps,
                "resumed_from": resumed_from, "stopped": stopped,
                "seconds": time.perf_counter() - start_time}

    for epoch in range(step // run.steps_per_epoch, config.train.epochs):
        episodes = epoch_episodes(epoch)[: run.steps_per_epoch * config.train.global_batch]
        options = EpisodeOptions(config.model.image_size, config.data.condition, training=True,
                                 seed=(config.train.seed, epoch))
        loader = EpisodeLoader(source, episodes, config.train.global_batch, options,
                               drop_remainder=True, workers=workers,
                               prefetch_batches=config.data.prefetch_batches,
                               embeddings=embeddings)
        first = step - epoch * run.steps_per_epoch
        losses, tick, ticked_step = [], time.perf_counter(), step
        with tqdm(total=run.steps_per_epoch, initial=first, desc=f"epoch {epoch}",
                  unit="step", disable=not progress) as bar:
            for host_batch in loader.batches(first):
                state, metrics = train_fn(state, run.frozen,
                                          sharding.to_global(host_batch, mesh), rng)
                step += 1
                losses.append(metrics["loss"])
                bar.update(1)
                if run.on_step is not None:
                    run.on_step(step, run.total_steps)
                if step % config.log.every_steps == 0:
                    loss = float(np.mean([float(x) for x in losses]))
                    seconds = (time.perf_counter() - tick) / max(step - ticked_step, 1)
                    logger.write(step, {"loss": loss, "lr": float(schedule(step - 1)),
                                        "step_seconds": seconds,
                                        "episodes_per_second":
                                            config.train.global_batch / seconds}, "train/")
                    bar.set_postfix(loss=f"{loss:.4f}")
                    losses, tick, ticked_step = [], time.perf_counter(), step
                if step % config.checkpoint.every_steps == 0:
                    checkpoints.save(step, state, _position(run, step))
                # checked at log steps (with several processes it is a collective); an
                # epoch's last step goes on to validate first
                if (step % config.log.every_steps == 0 and step % run.steps_per_epoch
                        and _out_of_time(run)):
                    if checkpoints.latest_step() != step:
                        checkpoints.save(step, state, _position(run, step), force=True)
                    return finish(stopped=True)
        if checkpoints.latest_step() != step:
            checkpoints.save(step, state, _position(run, step), force=True)
        last_epoch = epoch + 1 == config.train.epochs
        if (epoch + 1) % config.log.val_every_epochs == 0 or last_epoch:
            params = partition.merge(state.trainable, run.frozen)
            meter, figure = _validate(run, eval_step, params, source, embeddings, workers,
                                      progress, f"validate {epoch}")
            last_metrics = {"miou": meter.miou(), "fb_iou": meter.fb_iou()}
            logger.write(step, last_metrics, "val/")
            logger.write_image(step, "val/episodes", figure)
            checkpoints.save_best(step, state.trainable, {**last_metrics, "epoch": epoch})
        if not last_epoch and _out_of_time(run):
            return finish(stopped=True)
    return finish(stopped=False)


def _out_of_time(run: Run) -> bool:
    """Past the run's deadline (process 0's clock decides for all)."""
    return run.deadline is not None and processes.agree(time.monotonic() > run.deadline)


def _validate(run: Run, eval_step, params: dict, source, embeddings, workers, progress: bool,
              desc: str):
    """The validation episodes' meter, and a figure of the first few."""
    config = run.config
    rows: list[np.ndarray] = []
    meter = run_episodes(
        eval_step, params, source, validation_episodes(config, source),
        protocols.evaluation_classes(config.data.benchmark, config.data.fold,
                                     protocols.dataset_lists(source, config.data.val_protocol)),
        evaluation_options(config.model.image_size, config.data.condition), run.mesh,
        config.train.global_batch, embeddings=embeddings, workers=workers, progress=progress,
        desc=desc,
        on_batch=lambda b, logits: figures.episode_rows(
            b, logits, rows, VALIDATION_FIGURES,
            lambda c: splits.class_name(config.data.benchmark, c)))
    return meter, figures.figure(rows, config.data.condition)


def _position(run: Run, step: int) -> dict:
    epoch, batch = divmod(step, run.steps_per_epoch)
    return {"step": step, "epoch": epoch, "batch_in_epoch": batch,
            "steps_per_epoch": run.steps_per_epoch}
