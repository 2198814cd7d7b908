"""SAM's mask decoder: output tokens through the two-way transformer, hypernetwork masks, IoU."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_port.config import MaskDecoderConfig
from sam_port.modeling.common import MLP, ConvTranspose2x2, Embed, gelu, layer_norm_2d
from sam_port.modeling.transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    transformer_dim: int
    config: MaskDecoderConfig

    @nn.compact
    def __call__(
        self,
        image_embeddings: jax.Array,
        image_pe: jax.Array,
        sparse_prompt_embeddings: jax.Array,
        dense_prompt_embeddings: jax.Array,
        multimask_output: bool,
    ) -> tuple[jax.Array, jax.Array]:
        """image_embeddings: (1 or B, h, w, C); image_pe: (1, h, w, C); sparse: (B, N, C);
        dense: (B, h, w, C). Returns low-res mask logits (B, M, 4h, 4w) and IoU scores (B, M),
        M = 1 or num_multimask_outputs."""
        cfg, c = self.config, self.transformer_dim
        num_mask_tokens = cfg.num_multimask_outputs + 1
        bs = sparse_prompt_embeddings.shape[0]

        output_tokens = jnp.concatenate(
            [Embed(1, c, name="iou_token")(), Embed(num_mask_tokens, c, name="mask_tokens")()], 0
        )
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
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + num_mask_tokens, :]

        x = src.reshape(bs, h, w, c)
        x = gelu(layer_norm_2d(name="output_upscaling_1")(
            ConvTranspose2x2(c // 4, name="output_upscaling_0")(x)))
        upscaled = gelu(ConvTranspose2x2(c // 8, name="output_upscaling_3")(x))
        hyper_in = jnp.stack(
            [MLP(c, c // 8, 3, name=f"output_hypernetworks_mlps_{i}")(mask_tokens_out[:, i])
             for i in range(num_mask_tokens)],
            axis=1,
        )
        masks = jnp.einsum("bmc,bhwc->bmhw", hyper_in, upscaled)
        iou_pred = MLP(cfg.iou_head_hidden_dim, num_mask_tokens, cfg.iou_head_depth,
                       name="iou_prediction_head")(iou_token_out)

        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou_pred[:, sl]
