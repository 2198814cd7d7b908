"""Architecture configurations of Segment Anything (the official ones and a tiny test one)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ImageEncoderConfig:
    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    out_chans: int = 256
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    use_abs_pos: bool = True
    use_rel_pos: bool = True

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class MaskDecoderConfig:
    transformer_depth: int = 2
    transformer_mlp_dim: int = 2048
    transformer_num_heads: int = 8
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256


@dataclasses.dataclass(frozen=True)
class SamConfig:
    """Everything needed to build a SAM; `prompt_embed_dim` is shared by encoder neck,
    prompt encoder and mask decoder, exactly as in `segment_anything.build_sam`."""

    image_encoder: ImageEncoderConfig = ImageEncoderConfig()
    mask_decoder: MaskDecoderConfig = MaskDecoderConfig()
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    def __post_init__(self) -> None:
        if self.image_encoder.out_chans != self.prompt_embed_dim:
            raise ValueError("image_encoder.out_chans must equal prompt_embed_dim")

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size

    @property
    def embedding_size(self) -> int:
        return self.image_encoder.grid_size

    @property
    def low_res_size(self) -> int:
        return 4 * self.image_encoder.grid_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamConfig:
        enc = dict(d["image_encoder"])
        enc["global_attn_indexes"] = tuple(enc["global_attn_indexes"])
        return cls(
            image_encoder=ImageEncoderConfig(**enc),
            mask_decoder=MaskDecoderConfig(**d["mask_decoder"]),
            prompt_embed_dim=d["prompt_embed_dim"],
            mask_in_chans=d["mask_in_chans"],
            pixel_mean=tuple(d["pixel_mean"]),
            pixel_std=tuple(d["pixel_std"]),
        )


SAM_CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig(ImageEncoderConfig(embed_dim=768, depth=12, num_heads=12,
                                          global_attn_indexes=(2, 5, 8, 11))),
    "vit_l": SamConfig(ImageEncoderConfig(embed_dim=1024, depth=24, num_heads=16,
                                          global_attn_indexes=(5, 11, 17, 23))),
    "vit_h": SamConfig(ImageEncoderConfig(embed_dim=1280, depth=32, num_heads=16,
                                          global_attn_indexes=(7, 15, 23, 31))),
    # Same architecture at toy scale, for tests and CPU demos. A 128px input gives an 8x8 grid;
    # window 3 makes the windowed blocks pad (8 -> 9) as ViT-B's 64 -> 70 does.
    "tiny": SamConfig(
        ImageEncoderConfig(img_size=128, embed_dim=48, depth=4, num_heads=3, window_size=3,
                           global_attn_indexes=(1, 3), out_chans=32),
        MaskDecoderConfig(transformer_mlp_dim=64, transformer_num_heads=2, iou_head_hidden_dim=32),
        prompt_embed_dim=32,
        mask_in_chans=8,
    ),
}
SAM_CONFIGS["default"] = SAM_CONFIGS["vit_h"]


def get_config(model_type: str) -> SamConfig:
    """The configuration for `model_type` (vit_b, vit_l, vit_h, default = vit_h, tiny)."""
    if model_type not in SAM_CONFIGS:
        raise ValueError(
            f"unknown SAM model type {model_type!r}; choose one of {sorted(SAM_CONFIGS)}"
        )
    return SAM_CONFIGS[model_type]
