"""SAM image embeddings per second: ours vs the PyTorch original, same device, same run.

    python benchmarks/sam_image_encoder.py --model-type vit_b --repeats 5

Both models carry the same random weights (the official modules, converted). Prints one JSON
line: images per second for each, our compile time, the ratio ours / torch (above 1: ours is
faster), the max abs difference of the embeddings, and where XLA reports it, the encoder's
FLOPs and our achieved TFLOP/s. With `--compute-dtype bfloat16` ours computes in bf16 and
PyTorch runs under `torch.autocast(bfloat16)` (on a GPU). Needs the test extra (torch,
segment-anything).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # noqa: E402,F401  (torchvision stand-in for segment_anything's import)
import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from timing import (  # noqa: E402
    flop_count,
    interleaved_medians,
    torch_device,
    torch_synced,
)
from torch_sam import build_torch_sam, state_dict_numpy  # noqa: E402

import sam_port  # noqa: E402
from sam_port.checkpoint import convert_sam_state_dict  # noqa: E402
from sam_port.compute import embed_images  # noqa: E402


def measure(model_type: str, repeats: int = 3, batch: int = 1,
            compute_dtype: str = "float32") -> dict:
    """Images per second of SAM's image encoder, ours and PyTorch's, at SAM's input size."""
    config = sam_port.get_config(model_type)
    device = torch_device()
    torch_model = build_torch_sam(config, seed=0)
    ours = convert_sam_state_dict(state_dict_numpy(torch_model), model_type, "benchmark")
    encoder = torch_model.image_encoder.to(device).eval()
    image, image_torch, image_jax, params, autocast = inputs(
        config.img_size, batch, device, ours.params, compute_dtype)

    @torch_synced
    def run_torch():
        with torch.no_grad(), autocast:
            return encoder(image_torch)

    def run_ours():
        return jax.block_until_ready(embed_images(config, params, image_jax, compute_dtype))

    flops = flop_count(embed_images, config, params, image_jax, compute_dtype, "auto")
    return compare("sam_image_embedding", model_type, compute_dtype, device, image, run_torch,
                   run_ours, flops, repeats)


def inputs(size: int, batch: int, device: str, params: dict, compute_dtype: str) -> tuple:
    """A random (batch, size, size, 3) image as numpy, as an NCHW torch tensor and as a jax
    array on the devices; ours's parameters there; PyTorch's autocast for `compute_dtype`."""
    image = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
    image_torch = torch.from_numpy(image).permute(0, 3, 1, 2).contiguous().to(device)
    autocast = (torch.autocast(device, torch.bfloat16) if compute_dtype != "float32"
                else contextlib.nullcontext())
    return image, image_torch, jax.device_put(image), jax.device_put(params), autocast


def compare(benchmark: str, model_type: str, compute_dtype: str, device: str,
            image: np.ndarray, run_torch, run_ours, flops: float | None, repeats: int) -> dict:
    """Time `run_torch` (-> the NCHW reference embedding) against `run_ours` (-> ours,
    NHWC) on `image` (B, S, S, 3): the first call of ours is its compilation; the record
    `suite.py` prints."""
    batch, size = image.shape[:2]
    start = time.perf_counter()
    got = run_ours()
    compile_s = time.perf_counter() - start
    want = run_torch().float().cpu().numpy()  # also the warm-up
    torch_s, ours_s = interleaved_medians(run_torch, run_ours, repeats=repeats)
    return {
        "benchmark": benchmark, "model_type": model_type,
        "image": f"{batch}x{size}x{size}", "compute_dtype": compute_dtype,
        "torch_device": device,
        "max_abs_embedding_diff": float(np.abs(np.moveaxis(want, 1, -1) - np.asarray(got)).max()),
        "torch_images_per_second": round(batch / torch_s, 3),
        "ours_images_per_second": round(batch / ours_s, 3),
        "ours_compile_seconds": round(compile_s, 1),
        "ratio": round(torch_s / ours_s, 3),
        "gflops_per_image": None if flops is None else round(flops / batch / 1e9, 3),
        "ours_tflops": None if flops is None else round(flops / ours_s / 1e12, 3),
    }


def command_line(doc: str, measure_fn, default: str, choices: list[str]) -> None:
    """An encoder benchmark's command line: its options, one JSON line printed."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--model-type", default=default, choices=choices)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--compute-dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    print(json.dumps(measure_fn(args.model_type, args.repeats, args.batch, args.compute_dtype)))


if __name__ == "__main__":
    command_line(__doc__, measure, "vit_b", ["vit_b", "vit_l", "vit_h", "tiny"])
