"""Run a list of evaluation episodes through an evaluation step on the mesh and accumulate the
metric.

Every episode's reference annotation is simulated from a generator seeded with (seed, episode
index) and padded rows of the last batch are left out, so the numbers do not depend on the
batch size, the number of devices or the number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm

from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions
from vrp_sam_jax.data.protocols import Episode
from vrp_sam_jax.data.sources import EpisodeSource
from vrp_sam_jax.evaluation.metric import IoUMeter
from vrp_sam_jax.evaluation.step import EvalStep, jit_eval_step
from vrp_sam_jax.models import VRPSamConfig
from vrp_sam_jax.names import VRP_SEED
from vrp_sam_jax.runtime import sharding


def evaluation_options(image_size: int, condition: str) -> EpisodeOptions:
    """Episode options of evaluation: annotations seeded with the release's 321."""
    return EpisodeOptions(image_size, condition, seed=(VRP_SEED,))


def run_episodes(step: EvalStep, params: dict, source: EpisodeSource,
                 episodes: Sequence[Episode], class_ids: Sequence[int], options: EpisodeOptions,
                 mesh, global_batch: int, *, embeddings: Callable | None = None,
                 workers: int | None = None, progress: bool = True, desc: str = "evaluate",
                 on_batch: Callable[[dict, np.ndarray], None] | None = None,
                 host_areas: Callable[[dict, np.ndarray], np.ndarray] | None = None
                 ) -> IoUMeter:
    """`step(params, batch) -> (logits, areas)` over all episodes; returns the meter, summed
    over all processes. `embeddings(names)` supplies cached SAM embeddings; `on_batch(host_batch,
    logits)` sees every batch (figures, per-episode records); `host_areas(host_batch, logits)`
    replaces the device's areas (e.g. measured at the original image size)."""
    meter = IoUMeter(class_ids)
    loader = EpisodeLoader(source, episodes, global_batch, options, workers=workers,
                           embeddings=embeddings)
    with tqdm(total=len(episodes), desc=desc, unit="ep", disable=not progress) as bar:
        for host_batch in loader:
            logits, areas = step(params, sharding.to_global(host_batch, mesh))
            valid = host_batch["valid"]
            if host_areas is not None or on_batch is not None:
                host_logits = sharding.host_rows(logits)
            areas = (sharding.host_rows(areas) if host_areas is None
                     else host_areas(host_batch, host_logits))
            meter.update(areas[valid], host_batch["class0"][valid])
            if on_batch is not None:
                on_batch(host_batch, host_logits)
            bar.update(int(valid.sum()))
    meter.areas = sharding.sum_over_processes(meter.areas)
    meter.episodes = int(sharding.sum_over_processes(np.asarray(meter.episodes)))
    return meter


def evaluate_params(model_config: VRPSamConfig, params: dict, source: EpisodeSource,
                    episodes: Sequence[Episode], class_ids: Sequence[int], condition: str,
                    mesh, global_batch: int, step: EvalStep | None = None,
                    **kwargs) -> IoUMeter:
    """`run_episodes` with `step` (default: the jitted evaluation step of `model_config` on `mesh`,
    compiled once per model, mesh and batch shape) and the evaluation seed."""
    step = step or jit_eval_step(model_config, mesh)
    return run_episodes(step, params, source, episodes, class_ids,
                        evaluation_options(model_config.image_size, condition), mesh, global_batch,
                        **kwargs)
