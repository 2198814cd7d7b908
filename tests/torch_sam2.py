"""The official SAM 2 (`sam2==1.1.0`'s modules, built without Hydra) at any of our configs,
with every parameter randomised, and its official-layout checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from sam_port.config import Sam2Config


def build_torch_sam2(config: Sam2Config, seed: int = 0, video: bool = False):
    """`SAM2Base` as `build_sam2` instantiates `sam2/configs/sam2.1/sam2.1_hiera_*.yaml` (the
    memory modules sized to `config.d_model` and `config.mem_dim`; the decoder's stability
    fallback as `apply_postprocessing` sets it), or with `video` the `SAM2VideoPredictor` of
    `build_sam2_video_predictor` (its overrides: binarised memory masks of prompted frames,
    holes of up to 8 low-res pixels filled), randomly initialised: norm weights near 1 and
    every zero-initialised tensor (biases, position tables, tokens) random too, so no term of
    the computation is tested on zeros or ones."""
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention
    from sam2.modeling.sam2_base import SAM2Base
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    torch.manual_seed(seed)
    t, d, grid, mem = config.trunk, config.d_model, config.embedding_size, config.mem_dim
    trunk = Hiera(embed_dim=t.embed_dim, num_heads=t.num_heads, stages=list(t.stages),
                  global_att_blocks=list(t.global_att_blocks), window_spec=list(t.window_spec),
                  window_pos_embed_bkg_spatial_size=list(t.window_pos_embed_bkg_spatial_size))
    neck = FpnNeck(position_encoding=PositionEmbeddingSine(num_pos_feats=d, normalize=True,
                                                           temperature=10000),
                   d_model=d, backbone_channel_list=list(t.channel_list),
                   fpn_top_down_levels=list(config.fpn_top_down_levels),
                   fpn_interp_model="nearest")

    def rope(**kwargs):
        return RoPEAttention(rope_theta=10000.0, feat_sizes=[grid, grid], embedding_dim=d,
                             num_heads=1, downsample_rate=1, dropout=0.1, **kwargs)

    memory_attention = MemoryAttention(
        d_model=d, pos_enc_at_input=True, num_layers=4,
        layer=MemoryAttentionLayer(
            activation="relu", dim_feedforward=config.memory_attention_feedforward,
            dropout=0.1, pos_enc_at_attn=False,
            self_attention=rope(), d_model=d, pos_enc_at_cross_attn_keys=True,
            pos_enc_at_cross_attn_queries=False, cross_attention=rope(rope_k_repeat=True,
                                                                      kv_in_dim=mem)))
    memory_encoder = MemoryEncoder(
        out_dim=mem, in_dim=d,
        position_encoding=PositionEmbeddingSine(num_pos_feats=mem, normalize=True,
                                                temperature=10000),
        mask_downsampler=MaskDownSampler(embed_dim=d, kernel_size=3, stride=2, padding=1),
        fuser=Fuser(CXBlock(dim=d, kernel_size=7, padding=3, layer_scale_init_value=1e-6,
                            use_dwconv=True), num_layers=2))
    version_2_1 = config.version == "2.1"
    model_class, video_args = SAM2Base, {}
    if video:
        model_class = SAM2VideoPredictor
        video_args = {"binarize_mask_from_pts_for_mem_enc": True, "fill_hole_area": 8}
    model = model_class(
        image_encoder=ImageEncoder(trunk=trunk, neck=neck, scalp=config.scalp),
        memory_attention=memory_attention, memory_encoder=memory_encoder, num_maskmem=7,
        image_size=config.image_size, sigmoid_scale_for_mem_enc=20.0,
        sigmoid_bias_for_mem_enc=-10.0, use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True, no_obj_embed_spatial=version_2_1,
        use_high_res_features_in_sam=True, multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True, use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=version_2_1, proj_tpos_enc_in_obj_ptrs=version_2_1,
        use_signed_tpos_enc_to_obj_ptrs=version_2_1, only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True, pred_obj_scores_mlp=True, fixed_no_obj_ptr=True,
        multimask_output_for_tracking=True, use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0, multimask_max_pt_num=1, use_mlp_for_obj_ptr_proj=True,
        sam_mask_decoder_extra_args={"dynamic_multimask_via_stability": True,
                                     "dynamic_multimask_stability_delta": 0.05,
                                     "dynamic_multimask_stability_thresh": 0.98},
        **video_args,
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if torch.all(p == 1):  # norm weights
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif torch.all(p == 0) or p.ndim <= 3 and p.numel() == p.shape[-1]:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))  # biases, tokens, tables
        trunk.pos_embed.copy_(0.5 * torch.randn(trunk.pos_embed.shape, generator=gen))
        trunk.pos_embed_window.copy_(0.5 * torch.randn(trunk.pos_embed_window.shape,
                                                       generator=gen))
    return model.eval()


def state_dict_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def save_official_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """The model as the official `.pt` files hold it: `{"model": state_dict}`."""
    torch.save({"model": model.state_dict()}, path)
    return path


def connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`sam2.utils.misc.get_connected_components` (its CUDA extension's 8-connected labels
    and each pixel's component area) with scipy, so the official hole filling runs here."""
    labels = np.zeros(mask.shape, np.int32)
    areas = np.zeros(mask.shape, np.int32)
    for i in range(mask.shape[0]):
        found, _ = ndimage.label(mask[i, 0].numpy(), structure=np.ones((3, 3), bool))
        labels[i, 0] = found
        areas[i, 0] = np.where(found > 0, np.bincount(found.ravel())[found], 0)
    return torch.from_numpy(labels), torch.from_numpy(areas)
