"""The official PyTorch SAM at any of our configs, with every parameter randomised."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from sam_port.config import SamConfig


def build_torch_sam(config: SamConfig, seed: int = 0) -> Sam:
    """`segment_anything`'s `_build_sam` generalised to our config, randomly initialised.

    The original initialises LayerNorm weights to 1 and biases, absolute and relative position
    embeddings to 0; those are replaced by random values too, so no term of the computation is
    tested on zeros or ones.
    """
    torch.manual_seed(seed)
    enc, dec, c = config.image_encoder, config.mask_decoder, config.prompt_embed_dim
    grid = config.embedding_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=enc.depth, embed_dim=enc.embed_dim, img_size=enc.img_size,
            mlp_ratio=enc.mlp_ratio, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=enc.num_heads, patch_size=enc.patch_size, qkv_bias=True,
            use_rel_pos=enc.use_rel_pos, global_attn_indexes=enc.global_attn_indexes,
            window_size=enc.window_size, out_chans=enc.out_chans,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=c, image_embedding_size=(grid, grid),
            input_image_size=(enc.img_size, enc.img_size), mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=dec.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=dec.transformer_depth, embedding_dim=c, mlp_dim=dec.transformer_mlp_dim,
                num_heads=dec.transformer_num_heads,
            ),
            transformer_dim=c, iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
        ),
        pixel_mean=list(config.pixel_mean),
        pixel_std=list(config.pixel_std),
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if torch.all(p == 1):  # norm weights
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif torch.all(p == 0):  # biases, pos_embed, rel_pos
                scale = 0.5 if "rel_pos" in name or "pos_embed" in name else 0.1
                p.copy_(scale * torch.randn(p.shape, generator=gen))
    return sam.eval()


def state_dict_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
