"""The release's objective (docs/COMPUTATION.md §6): BCE-with-logits (mean over pixels) + Dice;
BCE or Dice alone for the paper's loss ablation (Table 5)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from vrp_sam_jax.names import LOSSES  # `train.loss`; the release's is bce+dice


def _terms(logits: jax.Array, truth: jax.Array, weights: jax.Array | None
           ) -> tuple[jax.Array, jax.Array]:
    """(weighted mean BCE, weighted mean Dice) over the batch."""
    logits = logits.astype(jnp.float32)
    truth = truth.astype(jnp.float32)
    b = logits.shape[0]
    w = jnp.ones((b,), jnp.float32) if weights is None else weights.astype(jnp.float32)
    count = jnp.maximum(w.sum(), 1.0)
    bce = optax.sigmoid_binary_cross_entropy(logits, truth).reshape(b, -1).mean(1)
    p = jax.nn.sigmoid(logits).reshape(b, -1)
    y = truth.reshape(b, -1)
    dice = 1 - (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1)
    return (w * bce).sum() / count, (w * dice).sum() / count


def segmentation_loss(kind: str, logits: jax.Array, truth: jax.Array,
                      weights: jax.Array | None = None) -> jax.Array:
    """logits, truth (B, H, W) -> scalar. BCE is the mean over all pixels of the batch; Dice
    = 1 - (2 sum(p y) + 1) / (sum(p) + sum(y) + 1) per sample, summed and divided by the
    batch size. `weights` (B,) masks padded rows out (all ones: the release's loss). `kind`
    is one of `LOSSES`."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose from {', '.join(LOSSES)}")
    bce, dice = _terms(logits, truth, weights)
    return {"bce+dice": bce + dice, "bce": bce, "dice": dice}[kind]


def bce_dice_loss(logits: jax.Array, truth: jax.Array, weights: jax.Array | None = None
                  ) -> jax.Array:
    """The release's loss: `segmentation_loss("bce+dice", ...)`; logits, truth (B, H, W) ->
    scalar."""
    return segmentation_loss("bce+dice", logits, truth, weights)
