"""Run a list of evaluation episodes through a model on the mesh and accumulate the metric.

Every episode's reference annotation is simulated from a generator seeded with (seed, episode
index) and padded rows of the last batch are left out, so the numbers do not depend on the
batch size or the number of devices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import numpy as np
from tqdm import tqdm

from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions
from vrp_sam_jax.data.protocols import Episode
from vrp_sam_jax.data.sources import EpisodeSource
from vrp_sam_jax.metrics import IoUMeter
from vrp_sam_jax.models import VRPSamConfig
from vrp_sam_jax.training.mesh import batch_sharding, to_global
from vrp_sam_jax.training.step import jit_eval_step

EVAL_SEED = 321


def run_episodes(eval_fn: Callable, params: dict, source: EpisodeSource,
                 episodes: Sequence[Episode], class_ids: Sequence[int], options: EpisodeOptions,
                 mesh, global_batch: int, *, embeddings: Callable | None = None,
                 workers: int | None = None, progress: bool = True, desc: str = "evaluate",
                 on_batch: Callable[[dict, np.ndarray], None] | None = None,
                 host_areas: Callable[[dict, np.ndarray], np.ndarray] | None = None
                 ) -> IoUMeter:
    """`eval_fn(params, batch) -> (logits, areas)` over all episodes; returns the meter.
    `embeddings(names)` supplies cached SAM embeddings; `on_batch(host_batch, logits)` sees
    every batch (figures, per-episode records); `host_areas(host_batch, logits)` replaces the
    device's areas (e.g. measured at the original image size)."""
    meter = IoUMeter(class_ids)
    loader = EpisodeLoader(source, episodes, global_batch, options, workers=workers,
                           embeddings=embeddings)
    with tqdm(total=len(episodes), desc=desc, unit="ep", disable=not progress) as bar:
        for host_batch in loader:
            logits, areas = eval_fn(params, to_global(host_batch, mesh))
            valid = host_batch["valid"]
            if host_areas is not None or on_batch is not None:
                host_logits = _host_rows(logits)
            areas = (_host_rows(areas) if host_areas is None
                     else host_areas(host_batch, host_logits))
            meter.update(areas[valid], host_batch["class0"][valid])
            if on_batch is not None:
                on_batch(host_batch, host_logits)
            bar.update(int(valid.sum()))
    return _all_hosts(meter)


def evaluate_params(model: VRPSamConfig, params: dict, source: EpisodeSource,
                    episodes: Sequence[Episode], class_ids: Sequence[int], condition: str,
                    mesh, global_batch: int, **kwargs) -> IoUMeter:
    """`run_episodes` with the jitted evaluation step of `model` on `mesh` (compiled once per
    model, mesh and batch shape) and the evaluation seed."""
    eval_fn = eval_step(model, mesh)
    options = EpisodeOptions(model.image_size, condition, seed=(EVAL_SEED,))
    return run_episodes(eval_fn, params, source, episodes, class_ids, options, mesh,
                        global_batch, **kwargs)


@functools.lru_cache(maxsize=8)
def eval_step(model: VRPSamConfig, mesh) -> Callable:
    """The jitted evaluation step of `model` on `mesh`, built once per (model, mesh)."""
    return jit_eval_step(model, batch_sharding(mesh))


def _host_rows(array: jax.Array) -> np.ndarray:
    """This host's rows of a batch-sharded global array."""
    shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
    rows, seen = [], set()
    for shard in shards:
        start = shard.index[0].start or 0
        if start not in seen:
            seen.add(start)
            rows.append(np.asarray(shard.data))
    return np.concatenate(rows)


def _all_hosts(meter: IoUMeter) -> IoUMeter:
    if jax.process_count() == 1:
        return meter
    from jax.experimental import multihost_utils

    areas = multihost_utils.process_allgather(meter.areas)
    counts = multihost_utils.process_allgather(np.asarray(meter.episodes))
    meter.areas = np.asarray(areas).sum(0)
    meter.episodes = int(np.asarray(counts).sum())
    return meter
