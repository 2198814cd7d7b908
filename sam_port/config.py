"""Architecture configurations of Segment Anything and SAM 2 (the official ones and tiny test
ones)."""

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
    # SAM 2's additions (`sam2/modeling/sam/mask_decoder.py`); SAM keeps the defaults
    use_high_res_features: bool = False  # stride-4 and stride-8 features added when upscaling
    iou_prediction_use_sigmoid: bool = False
    pred_obj_scores: bool = False  # an object-score token and head
    pred_obj_scores_mlp: bool = False  # that head a 3-layer MLP (else one Linear)


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


def get_config(model_type: str) -> SamConfig | Sam2Config:
    """The configuration for `model_type`: a SAM (vit_b, vit_l, vit_h, default = vit_h, tiny)
    or a SAM 2 (`SAM2_CONFIGS`' names and the config files' short names)."""
    if model_type in SAM_CONFIGS:
        return SAM_CONFIGS[model_type]
    if is_sam2_type(model_type):
        return get_sam2_config(model_type)
    raise ValueError(f"unknown SAM model type {model_type!r}; choose one of "
                     f"{sorted(SAM_CONFIGS)} or SAM 2's {sorted(SAM2_CONFIGS)}")


# ---------------------------------------------------------------------------------------------
# SAM 2 (Ravi et al., 2024): the image model of `sam2/configs/sam2.1/sam2.1_hiera_*.yaml`.


@dataclasses.dataclass(frozen=True)
class HieraConfig:
    """`sam2.modeling.backbones.hieradet.Hiera`'s arguments (its defaults here too)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (2, 3, 16, 3)  # blocks per stage
    global_att_blocks: tuple[int, ...] = (12, 16, 20)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)  # window per stage (0: global)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    q_pool: int = 3  # stages whose first block pools the queries
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0
    patch_stride: int = 4  # PatchEmbed: a 7x7 convolution, stride 4, padding 3

    @property
    def stage_ends(self) -> tuple[int, ...]:
        return tuple(sum(self.stages[: i + 1]) - 1 for i in range(len(self.stages)))

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Each stage's width, the last stage first (`Hiera.channel_list`)."""
        return tuple(int(self.embed_dim * self.dim_mul**i)
                     for i in reversed(range(len(self.stages))))


_SAM2_DECODER = MaskDecoderConfig(use_high_res_features=True, iou_prediction_use_sigmoid=True,
                                  pred_obj_scores=True, pred_obj_scores_mlp=True)


@dataclasses.dataclass(frozen=True)
class Sam2Config:
    """SAM 2's image model: Hiera trunk, FPN neck, SAM heads (`SAM2Base._build_sam_heads`
    fixes the decoder at depth 2, MLP 2048, 8 heads and the mask encoder at 16 channels)."""

    trunk: HieraConfig
    version: str = "2.1"  # "2" or "2.1": the releases differ in their video settings only
    # (2.1 adds `no_obj_embed_spatial` and a projection of the object pointers' temporal
    # encodings, `obj_ptr_tpos_proj`)
    image_size: int = 1024
    d_model: int = 256  # the neck's width, also the prompt embeddings' (`hidden_dim`)
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    scalp: int = 1  # the coarsest FPN level is dropped
    backbone_stride: int = 16
    mask_decoder: MaskDecoderConfig = _SAM2_DECODER
    mask_in_chans: int = 16
    directly_add_no_mem_embed: bool = True  # image mode: `no_mem_embed` added to the embedding
    # with multimask output, the decoder's `sam_tokens` (object pointers' source) are the
    # three multimask tokens' outputs, else the single-mask token's
    use_multimask_token_for_obj_ptr: bool = True
    # the video model (`memory_attention` / `memory_encoder` of the configs)
    num_maskmem: int = 7  # memory frames: the prompted one and 6 before
    mem_dim: int = 64  # the memory encoder's output width
    memory_attention_layers: int = 4
    memory_attention_feedforward: int = 2048
    # `SAM2Transforms`: pixels scaled to [0, 1] then normalised
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @property
    def prompt_embed_dim(self) -> int:
        return self.d_model

    @property
    def img_size(self) -> int:
        return self.image_size

    @property
    def embedding_size(self) -> int:
        return self.image_size // self.backbone_stride

    @property
    def low_res_size(self) -> int:
        return 4 * self.embedding_size

    @property
    def high_res_sizes(self) -> tuple[int, int]:
        """The sides of the stride-4 and stride-8 feature maps the decoder adds."""
        return 4 * self.embedding_size, 2 * self.embedding_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sam2Config:
        trunk = {k: tuple(v) if isinstance(v, list) else v for k, v in d["trunk"].items()}
        rest = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()
                if k not in ("trunk", "mask_decoder")}
        return cls(trunk=HieraConfig(**trunk), mask_decoder=MaskDecoderConfig(**d["mask_decoder"]),
                   **rest)


_HIERA = {
    "tiny": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2),
                        global_att_blocks=(5, 7, 9), window_pos_embed_bkg_spatial_size=(7, 7)),
    "small": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2),
                         global_att_blocks=(7, 10, 13), window_pos_embed_bkg_spatial_size=(7, 7)),
    "base_plus": HieraConfig(embed_dim=112, num_heads=2),
    "large": HieraConfig(embed_dim=144, num_heads=2, stages=(2, 6, 36, 4),
                         global_att_blocks=(23, 33, 43), window_pos_embed_bkg_spatial_size=(7, 7),
                         window_spec=(8, 4, 16, 8)),
}

# Named as the official checkpoints are (`sam2.1_hiera_base_plus.pt`, ...).
SAM2_CONFIGS: dict[str, Sam2Config] = {
    f"{release}_hiera_{size}": Sam2Config(trunk, version=version)
    for release, version in (("sam2", "2"), ("sam2.1", "2.1"))
    for size, trunk in _HIERA.items()
}
# The same architecture at toy scale, for tests and CPU demos: a 128px input, the official
# decoder (its sizes are fixed in SAM2Base), windows that pad as the official ones do at 1024
# (stage 3: 8x8 in windows of 6; the pooling block into stage 4 then pads 4x4 to 6x6); the
# memory narrower than the model (16 of 32) splits each object pointer into two memory tokens,
# as the official 64 of 256 splits it into four.
SAM2_CONFIGS["sam2.1_toy"] = Sam2Config(
    HieraConfig(embed_dim=16, num_heads=1, stages=(1, 2, 3, 1), global_att_blocks=(5,),
                window_spec=(8, 4, 6, 2), window_pos_embed_bkg_spatial_size=(7, 7)),
    image_size=128, d_model=32, mem_dim=16, memory_attention_feedforward=64,
)

# The official config files' short names (`sam2.1_hiera_b+.yaml`) name the same models.
_SAM2_ALIASES = {f"{release}_hiera_{short}": f"{release}_hiera_{size}"
                 for release in ("sam2", "sam2.1")
                 for short, size in (("t", "tiny"), ("s", "small"), ("b+", "base_plus"),
                                     ("l", "large"))}


def is_sam2_type(name: str) -> bool:
    return name in SAM2_CONFIGS or name in _SAM2_ALIASES


def sam2_model_type(name: str) -> str:
    """The model type `name` stands for (`sam2.1_hiera_b+` -> `sam2.1_hiera_base_plus`)."""
    name = _SAM2_ALIASES.get(name, name)
    if name not in SAM2_CONFIGS:
        raise ValueError(f"unknown SAM 2 model type {name!r}; choose one of "
                         f"{', '.join(sorted(SAM2_CONFIGS))} (or a config's short name, "
                         "e.g. sam2.1_hiera_b+)")
    return name


def get_sam2_config(model_type: str) -> Sam2Config:
    """The configuration of a SAM 2 `model_type` (an official name, short name or toy)."""
    return SAM2_CONFIGS[sam2_model_type(model_type)]
