"""The forward pass of a batch of episodes and the jitted evaluation step, written once: the
trainer differentiates `forward` and validates with `jit_eval_step`, the evaluator runs the
same step (or GP-SAM's, `jit_gp_sam_step`, for the baseline)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from vrp_sam_jax.evaluation import metric
from vrp_sam_jax.models import VRPSam, VRPSamConfig, gp_sam
from vrp_sam_jax.names import VRP_SEED
from vrp_sam_jax.runtime import sharding
from vrp_sam_jax.transforms.preprocess import normalize_image

EvalStep = Callable[[dict, dict], tuple[jax.Array, jax.Array]]  # (params, batch) -> out


def forward(model_config: VRPSamConfig, params: dict, batch: dict, deterministic: bool,
            rng: jax.Array | None = None) -> jax.Array:
    """A batch of episodes (`data.pipeline` layout) -> query logits (B, S, S). Uses
    `batch["embeddings"]` (cached SAM image embeddings) when present, else runs SAM's image
    encoder."""
    model = VRPSam(model_config)
    rngs = None if deterministic else {"dropout": rng}
    embeddings = batch.get("embeddings")
    return model.apply({"params": params}, normalize_image(batch["support_images"]),
                       batch["support_masks"], normalize_image(batch["query_image"]),
                       None if embeddings is None else embeddings.astype(jnp.float32),
                       deterministic, rngs=rngs)


def logit_areas(logits: jax.Array, truth: jax.Array, ignore: jax.Array) -> jax.Array:
    """`metric.episode_areas` inside a jitted step, from logits: (B, S, S) logits, truth and
    ignore -> (B, 2, 2) int32 background/foreground intersection and union, with prediction =
    sigmoid(logit) >= 0.5 (logit >= 0) and ignore pixels removed."""
    return metric.episode_areas(logits >= 0, truth, ignore, xp=jnp)


def eval_step(model_config: VRPSamConfig, params: dict, batch: dict) -> tuple[jax.Array, jax.Array]:
    """-> (logits (B, S, S), areas (B, 2, 2))."""
    logits = forward(model_config, params, batch, True)
    return logits, logit_areas(logits, batch["query_mask"], batch["query_ignore"])


@functools.lru_cache(maxsize=8)
def jit_eval_step(model_config: VRPSamConfig, mesh: jax.sharding.Mesh) -> EvalStep:
    """`eval_step` of `model_config` jitted over `mesh`, built once per (model, mesh). Parameters
    keep the sharding they come with (replicated, or SAM split over "model")."""
    batch = sharding.batch_sharding(mesh)
    return jax.jit(functools.partial(eval_step, model_config), in_shardings=(None, batch),
                   out_shardings=(batch, batch))


def gp_sam_step(model_config: VRPSamConfig, kind: str, threshold: float, params: dict, batch: dict
                ) -> tuple[jax.Array, jax.Array]:
    """GP-SAM's logits and areas of a batch of episodes (`models.gp_sam`)."""
    embeddings = batch.get("embeddings")
    reference = gp_sam.encode_reference(model_config, params,
                                        normalize_image(batch["support_images"]),
                                        batch["support_masks"])
    logits = gp_sam.gp_sam_logits(
        model_config, kind, threshold, params, reference, normalize_image(batch["query_image"]),
        gp_sam.row_keys(batch["index"], VRP_SEED),
        None if embeddings is None else embeddings.astype(jnp.float32))
    return logits, logit_areas(logits, batch["query_mask"], batch["query_ignore"])


@functools.lru_cache(maxsize=8)
def jit_gp_sam_step(model_config: VRPSamConfig, mesh: jax.sharding.Mesh, kind: str,
                    threshold: float) -> EvalStep:
    """`gp_sam_step` jitted over `mesh`, as `jit_eval_step`."""
    batch = sharding.batch_sharding(mesh)
    return jax.jit(functools.partial(gp_sam_step, model_config, kind, threshold),
                   in_shardings=(None, batch), out_shardings=(batch, batch))
