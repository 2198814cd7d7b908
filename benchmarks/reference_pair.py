"""The model pair the VRP-SAM benchmarks compare: the PyTorch reference (tests/torch_vrp.py,
random weights) and ours with the same weights, converted through the release's key layout."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import conftest  # noqa: E402,F401  (torchvision stand-in for segment_anything's import)
from torch_sam import build_torch_sam, state_dict_numpy  # noqa: E402
from torch_vrp import TorchVRPEncoder, TorchVRPSam, randomize_  # noqa: E402

import sam_port  # noqa: E402
from sam_port.checkpoint import convert_sam_state_dict  # noqa: E402
from vrp_sam_jax.models import VRPSamConfig  # noqa: E402
from vrp_sam_jax.weights.release import convert_release  # noqa: E402


@dataclasses.dataclass
class ModelPair:
    torch_encoder: TorchVRPEncoder
    torch_sam: object
    torch_model: TorchVRPSam
    config: VRPSamConfig
    params: dict  # ours: {"backbone", "encoder", "sam"}


def add_model_args(parser: argparse.ArgumentParser, backbone: str, image_size: int) -> None:
    parser.add_argument("--backbone", default=backbone,
                        choices=["resnet50", "resnet101", "vgg16", "resnet_tiny"])
    parser.add_argument("--sam-type", default="tiny", choices=["vit_b", "vit_l", "vit_h", "tiny"])
    parser.add_argument("--image-size", type=int, default=image_size)


def build_pair(backbone: str, sam_type: str, image_size: int) -> ModelPair:
    sam_config = sam_port.get_config(sam_type)
    torch_encoder = randomize_(TorchVRPEncoder(backbone, hidden_dim=sam_config.prompt_embed_dim),
                               seed=0)
    torch_sam = build_torch_sam(sam_config, seed=1)
    torch_model = TorchVRPSam(torch_encoder, torch_sam, image_size=image_size)
    weights = convert_release(torch_encoder.state_dict_release(), backbone, "benchmark")
    sam = convert_sam_state_dict(state_dict_numpy(torch_sam), sam_type, "benchmark")
    return ModelPair(torch_encoder, torch_sam, torch_model,
                     VRPSamConfig(backbone=backbone, sam_type=sam_type, image_size=image_size),
                     {**weights.params, "sam": sam.params})
