"""VRP-SAM's Flax modules: backbones, the VRP encoder and the full model."""

from vrp_sam_jax.models.backbones import BACKBONES, get_backbone_spec, make_backbone
from vrp_sam_jax.models.vrp_encoder import VRPEncoder
from vrp_sam_jax.models.vrp_sam import (
    LoadedModel,
    Reference,
    Target,
    VRPSam,
    VRPSamConfig,
    abstract_params,
    count_params,
    init_params,
    summary,
)

__all__ = [
    "BACKBONES", "LoadedModel", "Reference", "Target", "VRPEncoder", "VRPSam", "VRPSamConfig",
    "abstract_params", "count_params", "get_backbone_spec", "init_params", "make_backbone",
    "summary",
]
