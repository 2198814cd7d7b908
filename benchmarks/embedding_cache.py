"""Throughput of the SAM embedding-cache pre-pass against the bare image encoder, same run:
how close the pre-pass (reading, device batches over every local device, float16 storage on
disk) comes to saturating the devices.

    python benchmarks/embedding_cache.py --sam-type tiny --image-size 128 --images 256

The images come from memory (random uint8 at the model's size), so the figure isolates the
pre-pass's own overhead from the dataset's decoding speed (benchmarks/input_pipeline.py).
Prints one JSON line: images per second of each and their ratio (1: the pre-pass keeps the
devices as busy as a bare loop of encoder calls).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from timing import median_seconds  # noqa: E402

from vrp_sam_jax.models import VRPSamConfig, init_params  # noqa: E402
from vrp_sam_jax.runtime import sharding as mesh_lib  # noqa: E402
from vrp_sam_jax.training import embedding_cache  # noqa: E402


class MemorySource:
    """Random images held in memory, by name."""

    benchmark = "memory"

    def __init__(self, count: int, size: int):
        rng = np.random.default_rng(0)
        self.images = {f"img{i:05d}": rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                       for i in range(count)}

    def image(self, name: str) -> np.ndarray:
        return self.images[name]


def measure(sam_type: str, image_size: int, num_images: int, batch: int) -> dict:
    config = VRPSamConfig(backbone="resnet_tiny", sam_type=sam_type, image_size=image_size)
    sam_params = init_params(config, 0)["sam"]
    source = MemorySource(num_images, image_size)
    mesh = mesh_lib.make_mesh(devices=jax.local_devices())
    per_call = batch * mesh.shape["data"] if batch % mesh.shape["data"] else batch
    embed = embedding_cache.jit_embed(config, mesh, "float16")
    sam = jax.device_put(sam_params, mesh_lib.replicated(mesh))
    images = np.stack(list(source.images.values())[:per_call])
    calls = -(-num_images // per_call)
    jax.block_until_ready(embed(sam, images))  # compile

    def bare():
        for _ in range(calls):
            out = embed(sam, images)
        jax.block_until_ready(out)

    bare_s = median_seconds(bare, 3)
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        cache = embedding_cache.build(root, source.images, source, config, sam_params,
                                      batch=batch, progress=False)
        build_s = time.perf_counter() - start
        assert len(cache) == num_images
    return {"benchmark": "embedding_cache_prepass", "sam_type": sam_type,
            "image": f"{image_size}x{image_size}", "images": num_images,
            "batch_per_call": per_call, "devices": mesh.shape["data"],
            "bare_encoder_images_per_second": round(calls * per_call / bare_s, 2),
            "prepass_images_per_second": round(num_images / build_s, 2),
            "ratio": round(bare_s / build_s * num_images / (calls * per_call), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sam-type", default="tiny", choices=["vit_b", "vit_l", "vit_h", "tiny"])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(measure(args.sam_type, args.image_size, args.images, args.batch)))


if __name__ == "__main__":
    main()
