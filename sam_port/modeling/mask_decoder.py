"""SAM's mask decoder: output tokens through the two-way transformer, hypernetwork masks, IoU;
with SAM 2's additions when its config asks (`sam2/modeling/sam/mask_decoder.py`): high-res
features added while upscaling, an object-score token and head, sigmoid IoU."""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_port.config import MaskDecoderConfig
from sam_port.modeling.common import MLP, ConvTranspose2x2, Embed, gelu, layer_norm_2d
from sam_port.modeling.transformer import TwoWayTransformer


class DecoderOutput(NamedTuple):
    """masks: low-res logits (B, M, 4h, 4w); iou: (B, M); sam_tokens: the mask tokens' outputs
    (B, M', C), SAM 2's object pointers are made from them; object_score_logits: (B, 1), > 0
    where an object is seen (10 without the head, as the original)."""

    masks: jax.Array
    iou: jax.Array
    sam_tokens: jax.Array
    object_score_logits: jax.Array


class MaskDecoder(nn.Module):
    transformer_dim: int
    config: MaskDecoderConfig
    # SAM 2: which mask tokens' outputs are returned as `sam_tokens` with multimask output
    use_multimask_token_for_obj_ptr: bool = False

    def setup(self) -> None:
        # SAM 2 projects the stride-4 and stride-8 features once per image (`forward_image`),
        # not once per prompt, so these convolutions have a method of their own
        if self.config.use_high_res_features:
            c = self.transformer_dim
            self.conv_s0 = nn.Conv(c // 8, (1, 1))
            self.conv_s1 = nn.Conv(c // 4, (1, 1))

    def project_high_res(self, feat_s0: jax.Array, feat_s1: jax.Array
                         ) -> tuple[jax.Array, jax.Array]:
        """SAM 2's FPN levels 0 and 1, (B, 4h, 4w, C) and (B, 2h, 2w, C) -> (B, 4h, 4w, C/8)
        and (B, 2h, 2w, C/4), the high-res features `__call__` takes."""
        return self.conv_s0(feat_s0), self.conv_s1(feat_s1)

    @nn.compact
    def __call__(
        self,
        image_embeddings: jax.Array,
        image_pe: jax.Array,
        sparse_prompt_embeddings: jax.Array,
        dense_prompt_embeddings: jax.Array,
        multimask_output: bool,
        high_res_features: tuple[jax.Array, jax.Array] | None = None,
        dynamic_multimask: bool = False,
    ) -> DecoderOutput:
        """image_embeddings: (1 or B, h, w, C); image_pe: (1, h, w, C); sparse: (B, N, C);
        dense: (B, h, w, C); high_res_features (SAM 2): (1 or B, 4h, 4w, C/8) and
        (1 or B, 2h, 2w, C/4). Masks and IoU are those of tokens 1-3 with `multimask_output`,
        else of token 0."""
        cfg, c = self.config, self.transformer_dim
        num_mask_tokens = cfg.num_multimask_outputs + 1
        bs = sparse_prompt_embeddings.shape[0]

        tokens = [Embed(1, c, name="iou_token")(), Embed(num_mask_tokens, c, name="mask_tokens")()]
        if cfg.pred_obj_scores:
            tokens.insert(0, Embed(1, c, name="obj_score_token")())
        s = int(cfg.pred_obj_scores)  # where the IoU token sits
        output_tokens = jnp.concatenate(tokens, 0)
        output_tokens = jnp.broadcast_to(output_tokens, (bs, *output_tokens.shape))
        tokens = jnp.concatenate([output_tokens.astype(sparse_prompt_embeddings.dtype),
                                  sparse_prompt_embeddings], axis=1)

        # One image embedding serves every prompt of a batch (repeat_interleave in the original).
        src = jnp.broadcast_to(image_embeddings, (bs, *image_embeddings.shape[1:]))
        src = src + dense_prompt_embeddings
        pos_src = jnp.broadcast_to(image_pe, src.shape)
        _, h, w, _ = src.shape

        transformer = TwoWayTransformer(
            cfg.transformer_depth, c, cfg.transformer_num_heads, cfg.transformer_mlp_dim,
            cfg.attention_downsample_rate, name="transformer",
        )
        hs, src = transformer(src, pos_src, tokens)
        iou_token_out = hs[:, s, :]
        mask_tokens_out = hs[:, s + 1: s + 1 + num_mask_tokens, :]

        x = src.reshape(bs, h, w, c)
        x = ConvTranspose2x2(c // 4, name="output_upscaling_0")(x)
        upscale_2 = ConvTranspose2x2(c // 8, name="output_upscaling_3")
        if cfg.use_high_res_features:
            if high_res_features is None:
                raise ValueError("this decoder needs the high-res features (SAM 2)")
            feat_s0, feat_s1 = high_res_features
            x = gelu(layer_norm_2d(name="output_upscaling_1")(x + feat_s1))
            upscaled = gelu(upscale_2(x) + feat_s0)
        else:
            x = gelu(layer_norm_2d(name="output_upscaling_1")(x))
            upscaled = gelu(upscale_2(x))
        hyper_in = jnp.stack(
            [MLP(c, c // 8, 3, name=f"output_hypernetworks_mlps_{i}")(mask_tokens_out[:, i])
             for i in range(num_mask_tokens)],
            axis=1,
        )
        masks = jnp.einsum("bmc,bhwc->bmhw", hyper_in, upscaled)
        iou_pred = MLP(cfg.iou_head_hidden_dim, num_mask_tokens, cfg.iou_head_depth,
                       sigmoid_output=cfg.iou_prediction_use_sigmoid,
                       name="iou_prediction_head")(iou_token_out)
        if cfg.pred_obj_scores:
            head = (MLP(c, 1, 3, name="pred_obj_score_head") if cfg.pred_obj_scores_mlp
                    else nn.Dense(1, name="pred_obj_score_head"))
            object_score_logits = head(hs[:, 0, :])
        else:
            object_score_logits = jnp.full((bs, 1), 10.0, iou_pred.dtype)

        multimask_tokens = multimask_output and self.use_multimask_token_for_obj_ptr
        sam_tokens = mask_tokens_out[:, 1:] if multimask_tokens else mask_tokens_out[:, 0:1]
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif dynamic_multimask:
            masks, iou_pred = dynamic_multimask_via_stability(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, 0:1], iou_pred[:, 0:1]
        return DecoderOutput(masks, iou_pred, sam_tokens, object_score_logits)


# `build_sam2` / `build_sam2_video_predictor`'s settings of the fallback below
STABILITY_DELTA, STABILITY_THRESH = 0.05, 0.98


def dynamic_multimask_via_stability(masks: jax.Array, iou: jax.Array
                                    ) -> tuple[jax.Array, jax.Array]:
    """`MaskDecoder._dynamic_multimask_via_stability`: all tokens' masks (B, 4, h, w) and
    IoU (B, 4) -> token 0's where its stability score (area above +delta over area above
    -delta) is at least the threshold, else the multimask token with the highest IoU."""
    best = jnp.argmax(iou[:, 1:], axis=-1)[:, None] + 1
    best_masks = jnp.take_along_axis(masks, best[:, :, None, None], axis=1)
    best_iou = jnp.take_along_axis(iou, best, axis=1)
    single = masks[:, 0:1].reshape(masks.shape[0], 1, -1)
    area_i = jnp.sum(single > STABILITY_DELTA, axis=-1).astype(jnp.float32)
    area_u = jnp.sum(single > -STABILITY_DELTA, axis=-1).astype(jnp.float32)
    stable = jnp.where(area_u > 0, area_i / jnp.maximum(area_u, 1.0), 1.0) >= STABILITY_THRESH
    return (jnp.where(stable[:, :, None, None], masks[:, 0:1], best_masks),
            jnp.where(stable, iou[:, 0:1], best_iou))
