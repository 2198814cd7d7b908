"""The jitted train step over the mesh: the shared forward pass (`evaluation.step.forward`),
the release's loss (or an ablation's, `train.loss`), AdamW on the trainable subtree."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import flax
import jax
import jax.numpy as jnp
import optax

from vrp_sam_jax.evaluation.step import forward, logit_areas
from vrp_sam_jax.models import VRPSamConfig
from vrp_sam_jax.training import partition
from vrp_sam_jax.training.loss import segmentation_loss


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


def train_step(model_config: VRPSamConfig, optimizer: optax.GradientTransformation, loss: str,
               state: TrainState, frozen: dict, batch: dict, rng: jax.Array
               ) -> tuple[TrainState, dict]:
    """One optimizer step on the trainable subtree with the `loss` of `training.loss.LOSSES`;
    gradients of frozen parameters are never formed (they are not differentiated inputs)."""
    step_rng = jax.random.fold_in(rng, state.step)

    def loss_fn(trainable):
        logits = forward(model_config, partition.merge(trainable, frozen), batch, False, step_rng)
        return segmentation_loss(loss, logits, batch["query_mask"], batch["valid"]), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.trainable)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
               "areas": logit_areas(logits, batch["query_mask"], batch["query_ignore"])}
    return TrainState(state.step + 1, trainable, opt_state), metrics


def jit_train_step(model_config: VRPSamConfig, optimizer: optax.GradientTransformation,
                   state_sharding, frozen_sharding, batch_sharding, replicated,
                   loss: str = "bce+dice") -> Callable:
    return jax.jit(partial(train_step, model_config, optimizer, loss),
                   in_shardings=(state_sharding, frozen_sharding, batch_sharding, replicated),
                   out_shardings=(state_sharding, replicated), donate_argnums=(0,))

