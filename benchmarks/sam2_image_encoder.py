"""SAM 2 image encodings per second: ours vs the official `sam2`, same device, same run.

    python benchmarks/sam2_image_encoder.py --model-type sam2.1_hiera_tiny --repeats 5

Both carry the same random weights (the official modules, converted through the `.pt`
layout). Timed: what `SAM2ImagePredictor.set_image` computes from a normalised image, the
image embedding (with the no-memory embedding) and the two projected high-res feature maps
(the official `forward_image` + `_prepare_backbone_features`). Prints one JSON line: images
per second for each, our compile time, the ratio ours / official (above 1: ours is faster),
the largest difference of the embeddings, and where XLA reports it, the FLOPs and our
achieved TFLOP/s. `--compute-dtype bfloat16` runs ours in bf16 and the official under
`torch.autocast(bfloat16)` (on a GPU). Needs the test extra and `sam2` (README).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # noqa: E402,F401  (torchvision stand-in for sam2's imports)
import jax  # noqa: E402
import torch  # noqa: E402
from sam_image_encoder import command_line, compare, inputs  # noqa: E402
from timing import flop_count, torch_device, torch_synced  # noqa: E402
from torch_sam2 import build_torch_sam2, state_dict_numpy  # noqa: E402

import sam_port  # noqa: E402
from sam_port.compute import sam2_embed_images  # noqa: E402
from sam_port.sam2_checkpoint import convert_sam2_state_dict  # noqa: E402


def measure(model_type: str, repeats: int = 3, batch: int = 1,
            compute_dtype: str = "float32") -> dict:
    """Images per second of SAM 2's image encoder (trunk, neck, high-res projections), ours
    and the official's, at the model's input size."""
    config = sam_port.get_sam2_config(model_type)
    device = torch_device()
    torch_model = build_torch_sam2(config, seed=0)
    ours = convert_sam2_state_dict(state_dict_numpy(torch_model), model_type, "benchmark")
    torch_model = torch_model.to(device).eval()
    grid = config.embedding_size
    image, image_torch, image_jax, params, autocast = inputs(
        config.image_size, batch, device, ours.params, compute_dtype)

    @torch_synced
    def run_torch():  # `SAM2ImagePredictor.set_image` after its transforms
        with torch.no_grad(), autocast:
            backbone_out = torch_model.forward_image(image_torch)
            _, feats, _, _ = torch_model._prepare_backbone_features(backbone_out)
            embedding = feats[-1] + torch_model.no_mem_embed
            return embedding.permute(1, 2, 0).reshape(batch, -1, grid, grid)

    def run_ours():  # the embedding of the whole output, all of it computed
        return jax.block_until_ready(
            sam2_embed_images(config, params, image_jax, compute_dtype))[0]

    flops = flop_count(sam2_embed_images, config, params, image_jax, compute_dtype, "auto")
    return compare("sam2_image_embedding", model_type, compute_dtype, device, image,
                   run_torch, run_ours, flops, repeats)


if __name__ == "__main__":
    command_line(__doc__, measure, "sam2.1_hiera_tiny", sorted(sam_port.SAM2_CONFIGS))
