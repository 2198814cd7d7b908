"""Input pipeline throughput: episodes per second at 512x512, on the toy benchmark, on a
folder of JPEGs in the PASCAL VOC layout that this script writes (500x375, like VOC), and on
that folder packed into ArrayRecord shards (`vrp-sam pack`).

    python benchmarks/input_pipeline.py --episodes 96 --workers 1 2 4
    python benchmarks/input_pipeline.py --episodes 96 --workers 4 --latency-ms 20 --only files

Each row loads 1-shot episodes through `EpisodeLoader` (decode, resize, reference simulation,
batching) with the given number of worker threads and prints one JSON line per setting.
`--latency-ms` simulates a bucket mount (gcsfuse): every file opened by the folder reader, and
every record read from the shards, first waits that long (a request's round trip; the reads
themselves stay local).
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

from vrp_sam_jax.data import packed, protocols
from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions
from vrp_sam_jax.data.sources import PascalSource, ToySource


class SlowFolder(PascalSource):
    """The folder reader, each file opened after `latency` seconds (the image, its mask, and
    the image again for its size)."""

    def __init__(self, root, latency: float):
        super().__init__(root)
        self.latency = latency

    def image(self, name):
        time.sleep(self.latency)
        return super().image(name)

    def _label_file(self, name):
        time.sleep(self.latency)
        return super()._label_file(name)

    def _image_size(self, name):
        time.sleep(self.latency)
        return super()._image_size(name)


class SlowRecords:
    """Shard records, each read after `latency` seconds."""

    def __init__(self, records, latency: float):
        self.records, self.latency = records, latency

    def __len__(self):
        return len(self.records)

    def __getitem__(self, row):
        time.sleep(self.latency)
        return self.records[row]


def packed_source(root: Path, latency: float):
    source = packed.open_packed(root)
    source.records.records = SlowRecords(source.records.records, latency)
    return source


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
    parser.add_argument("--conditions", nargs="+", default=["mask", "scribble"])
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="simulated round trip per file opened / record read")
    parser.add_argument("--only", choices=("all", "files"), default="all",
                        help="files: the folder and packed readers only (no toy)")
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    toy_eps = protocols.training_episodes("toy", 0, 1, epoch=0, seed=0)[: args.episodes]
    with tempfile.TemporaryDirectory() as tmp:
        jpeg_eps = write_jpeg_folder(Path(tmp) / "folder", max(args.episodes, 40))
        jpeg_eps = jpeg_eps[: args.episodes]
        folder = SlowFolder(Path(tmp) / "folder", latency)
        packed.pack("pascal", Path(tmp) / "folder", Path(tmp) / "packed")
        for workers in args.workers:
            for condition in args.conditions:
                row = {"cpu_count": os.cpu_count(), "machine": platform.machine(),
                       "workers": workers, "condition": condition, "image_size": 512,
                       "episodes": args.episodes, "latency_ms": args.latency_ms}
                if args.only == "all":
                    row["toy_episodes_per_s"] = round(measure(ToySource(), toy_eps, workers,
                                                              condition, args.batch), 1)
                row["jpeg_episodes_per_s"] = round(measure(folder, jpeg_eps, workers,
                                                           condition, args.batch), 1)
                # a fresh reader per row: its record cache starts empty, like the folder's
                row["packed_episodes_per_s"] = round(measure(
                    packed_source(Path(tmp) / "packed", latency), jpeg_eps, workers,
                    condition, args.batch), 1)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
