"""The jitted train and evaluation steps (one `jax.jit` each, over the mesh)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import flax
import jax
import jax.numpy as jnp
import optax

from vrp_sam_jax import metrics
from vrp_sam_jax.models import VRPSam, VRPSamConfig
from vrp_sam_jax.preprocess import normalize_image
from vrp_sam_jax.training import partition
from vrp_sam_jax.training.loss import bce_dice_loss


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    trainable: dict
    opt_state: optax.OptState


def make_schedule(lr: float, total_steps: int) -> optax.Schedule:
    """Cosine decay to 0 over `total_steps`, no warm-up (the release's CosineAnnealingLR
    stepped once per optimizer step): step t uses lr * (1 + cos(pi t / T)) / 2."""
    return optax.cosine_decay_schedule(lr, max(total_steps, 1))


def make_optimizer(lr: float, total_steps: int, weight_decay: float, b1: float = 0.9,
                   b2: float = 0.999) -> optax.GradientTransformation:
    """AdamW (decoupled weight decay, eps 1e-8, as torch.optim.AdamW) on the schedule."""
    return optax.adamw(make_schedule(lr, total_steps), b1=b1, b2=b2, weight_decay=weight_decay)


def init_state(trainable: dict, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(jnp.zeros((), jnp.int32), trainable, optimizer.init(trainable))


def forward(config: VRPSamConfig, params: dict, batch: dict, deterministic: bool,
            rng: jax.Array | None = None) -> jax.Array:
    """A batch of episodes -> query logits (B, S, S). Uses `batch["embeddings"]` (cached SAM
    image embeddings) when present, else runs SAM's image encoder."""
    model = VRPSam(config)
    rngs = None if deterministic else {"dropout": rng}
    embeddings = batch.get("embeddings")
    return model.apply({"params": params}, normalize_image(batch["support_images"]),
                       batch["support_masks"], normalize_image(batch["query_image"]),
                       None if embeddings is None else embeddings.astype(jnp.float32),
                       deterministic, rngs=rngs)


def episode_areas(logits: jax.Array, truth: jax.Array, ignore: jax.Array) -> jax.Array:
    """(B, 2, 2) int32 background/foreground intersection and union (`metrics`), with
    prediction = sigmoid(logit) >= 0.5 and ignore pixels removed."""
    return metrics.episode_areas(logits >= 0, truth, ignore, xp=jnp)


def train_step(config: VRPSamConfig, optimizer: optax.GradientTransformation,
               state: TrainState, frozen: dict, batch: dict, rng: jax.Array
               ) -> tuple[TrainState, dict]:
    """One optimizer step on the trainable subtree; gradients of frozen parameters are never
    formed (they are not differentiated inputs)."""
    step_rng = jax.random.fold_in(rng, state.step)

    def loss_fn(trainable):
        logits = forward(config, partition.merge(trainable, frozen), batch, False, step_rng)
        return bce_dice_loss(logits, batch["query_mask"], batch["valid"]), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.trainable)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
               "areas": episode_areas(logits, batch["query_mask"], batch["query_ignore"])}
    return TrainState(state.step + 1, trainable, opt_state), metrics


def eval_step(config: VRPSamConfig, params: dict, batch: dict) -> tuple[jax.Array, jax.Array]:
    """-> (logits (B, S, S), areas (B, 2, 2))."""
    logits = forward(config, params, batch, True)
    return logits, episode_areas(logits, batch["query_mask"], batch["query_ignore"])


def jit_train_step(config: VRPSamConfig, optimizer: optax.GradientTransformation,
                   state_sharding, frozen_sharding, batch_sharding, replicated) -> Callable:
    return jax.jit(partial(train_step, config, optimizer),
                   in_shardings=(state_sharding, frozen_sharding, batch_sharding, replicated),
                   out_shardings=(state_sharding, replicated), donate_argnums=(0,))


def jit_eval_step(config: VRPSamConfig, batch_sharding) -> Callable:
    """Parameters keep the sharding they come with (replicated, or SAM split over "model")."""
    return jax.jit(partial(eval_step, config), in_shardings=(None, batch_sharding),
                   out_shardings=(batch_sharding, batch_sharding))
