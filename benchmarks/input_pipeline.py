"""Input pipeline throughput: episodes per second at 512x512, on the toy benchmark and on a
folder of JPEGs in the PASCAL VOC layout that this script writes (500x375, like VOC).

    python benchmarks/input_pipeline.py --episodes 96 --workers 1 2 4

Each row loads 1-shot episodes through `EpisodeLoader` (decode, resize, reference simulation,
batching) with the given number of worker threads and prints one JSON line per setting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vrp_sam_jax.data import protocols
from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions
from vrp_sam_jax.data.sources import PascalSource, ToySource


def write_jpeg_folder(root: Path, count: int, seed: int = 0) -> list[protocols.Episode]:
    """`count` 500x375 JPEG photos-like images (smooth field + noise) with one object each,
    VOC layout; returns 1-shot episodes pairing image i with image i+1."""
    voc = root / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClassAug").mkdir()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500]
    for i in range(count):
        base = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        field = np.asarray(Image.fromarray(base).resize((500, 375), Image.BILINEAR), np.float32)
        field += rng.normal(0, 20, field.shape)
        cy, cx, r = rng.uniform(100, 275), rng.uniform(100, 400), rng.uniform(40, 90)
        obj = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        label = np.where(obj, 1 + i % 20, 0).astype(np.uint8)
        label[((yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 2) ** 2) & ~obj] = 255
        name = f"img_{i:05d}"
        Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).save(
            voc / "JPEGImages" / f"{name}.jpg", quality=90)
        Image.fromarray(label, mode="L").save(voc / "SegmentationClassAug" / f"{name}.png")
    by_class: dict[int, list[str]] = {}
    for i in range(count):
        by_class.setdefault(i % 20, []).append(f"img_{i:05d}")
    episodes = []
    for i in range(count):
        names = by_class[i % 20]
        query = f"img_{i:05d}"
        support = names[(names.index(query) + 1) % len(names)]
        episodes.append(protocols.Episode(query, (support,), i % 20))
    return episodes


def measure(source, episodes, workers: int, condition: str, batch: int) -> float:
    options = EpisodeOptions(image_size=512, condition=condition)
    loader = EpisodeLoader(source, episodes, batch, options, drop_remainder=True,
                           process_index=0, process_count=1, workers=workers,
                           prefetch_batches=max(2, 2 * workers // batch + 1))
    start = time.perf_counter()
    count = sum(int(b["valid"].sum()) for b in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=96)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    toy_eps = protocols.training_episodes("toy", 0, 1, epoch=0, seed=0)[: args.episodes]
    with tempfile.TemporaryDirectory() as tmp:
        jpeg_eps = write_jpeg_folder(Path(tmp), max(args.episodes, 40))[: args.episodes]
        pascal = PascalSource(tmp)
        for workers in args.workers:
            for condition in ("mask", "scribble"):
                row = {"cpu_count": os.cpu_count(), "machine": platform.machine(),
                       "workers": workers, "condition": condition, "image_size": 512,
                       "episodes": args.episodes,
                       "toy_episodes_per_s": round(measure(ToySource(), toy_eps, workers,
                                                           condition, args.batch), 1),
                       "jpeg_episodes_per_s": round(measure(pascal, jpeg_eps, workers,
                                                            condition, args.batch), 1)}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
