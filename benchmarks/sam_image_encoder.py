"""CPU (or any device) time of one SAM image embedding: ours vs the PyTorch original, same run.

    python benchmarks/sam_image_encoder.py --model-type vit_b --repeats 5

Both models carry the same random weights (the official modules, converted). Prints one JSON
line with the median seconds per 1024x1024 image, our compile time, and the ratio
torch / ours (above 1: ours is faster). Needs the test extra (torch, segment-anything).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # noqa: E402,F401  (torchvision stand-in for segment_anything's import)
import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from timing import median_seconds  # noqa: E402
from torch_sam import build_torch_sam, state_dict_numpy  # noqa: E402

import sam_port  # noqa: E402
from sam_port.checkpoint import convert_sam_state_dict  # noqa: E402
from sam_port.predictor import embed_images  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-type", default="vit_b",
                        choices=["vit_b", "vit_l", "vit_h", "tiny"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    config = sam_port.get_config(args.model_type)
    torch_model = build_torch_sam(config, seed=0)
    ours = convert_sam_state_dict(state_dict_numpy(torch_model), args.model_type, "benchmark")
    size = config.img_size
    image = np.random.default_rng(0).normal(size=(1, size, size, 3)).astype(np.float32)
    image_torch = torch.from_numpy(image).permute(0, 3, 1, 2).contiguous()
    image_jax = jax.device_put(image)

    def run_torch():
        with torch.no_grad():
            return torch_model.image_encoder(image_torch)

    def run_ours():
        return jax.block_until_ready(embed_images(config, ours.params, image_jax))

    start = time.perf_counter()
    run_ours()
    compile_s = time.perf_counter() - start
    run_torch()  # warm-up
    torch_s = median_seconds(run_torch, args.repeats)
    ours_s = median_seconds(run_ours, args.repeats)
    result = {
        "benchmark": "sam_image_embedding",
        "model_type": args.model_type,
        "image": f"1x{size}x{size}",
        "device": str(jax.devices()[0].device_kind),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "torch_seconds": round(torch_s, 3),
        "ours_seconds": round(ours_s, 3),
        "ours_compile_seconds": round(compile_s, 1),
        "ratio_torch_over_ours": round(torch_s / ours_s, 3),
        "versions": {"jax": jax.__version__, "torch": torch.__version__},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
