"""Evaluation episodes per second: ours (`evaluate_params`: input pipeline + one jitted step per
batch, areas on the device) vs the PyTorch reference model fed by the same pipeline, same
weights, same episodes, same run.

    python benchmarks/evaluation.py --backbone resnet_tiny --sam-type tiny --image-size 128 \\
        --episodes 96 --batch 8

Both sides load the episodes with the same `EpisodeLoader` (toy benchmark, mask condition)
and count the same metric; the mIoU of the two must agree. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from reference_pair import add_model_args, build_pair  # noqa: E402

from vrp_sam_jax.data import protocols, splits  # noqa: E402
from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions  # noqa: E402
from vrp_sam_jax.data.sources import ToySource  # noqa: E402
from vrp_sam_jax.evaluation import EVAL_SEED, evaluate_params  # noqa: E402
from vrp_sam_jax.metrics import IoUMeter, episode_areas  # noqa: E402
from vrp_sam_jax.preprocess import normalize_image  # noqa: E402
from vrp_sam_jax.training.mesh import make_mesh  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(parser, "resnet_tiny", 128)
    parser.add_argument("--episodes", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    pair = build_pair(args.backbone, args.sam_type, args.image_size)
    torch_model = pair.torch_model.eval()
    config, params = pair.config, jax.device_put(pair.params)
    fold, classes = 0, splits.test_classes("toy", 0)
    episodes = protocols.episodes("toy", fold, 1, "hsnet", args.episodes)
    mesh = make_mesh(devices=jax.devices()[:1])

    def ours(eps):
        return evaluate_params(config, params, ToySource(), eps, classes, "mask", mesh,
                               args.batch, progress=False)

    def reference(eps):
        meter = IoUMeter(classes)
        options = EpisodeOptions(args.image_size, "mask", seed=(EVAL_SEED,))
        loader = EpisodeLoader(ToySource(), eps, args.batch, options, process_index=0,
                               process_count=1)
        for batch in loader:
            query = torch.from_numpy(np.moveaxis(normalize_image(batch["query_image"]), -1, 1)
                                     .copy())
            support = torch.from_numpy(
                np.moveaxis(normalize_image(batch["support_images"]), -1, 2).copy())
            with torch.no_grad():
                logits = torch_model(query, support, torch.from_numpy(batch["support_masks"]))
            areas = episode_areas(logits.numpy() >= 0, batch["query_mask"],
                                  batch["query_ignore"])
            valid = batch["valid"]
            meter.update(areas[valid], batch["class0"][valid])
        return meter

    ours(episodes[: args.batch])  # compile
    reference(episodes[: args.batch])
    start = time.perf_counter()
    ours_meter = ours(episodes)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    torch_meter = reference(episodes)
    torch_s = time.perf_counter() - start
    print(json.dumps({
        "benchmark": "evaluation_episodes_per_second", "backbone": args.backbone,
        "sam_type": args.sam_type, "image": f"{args.image_size}x{args.image_size}",
        "batch": args.batch, "episodes": args.episodes,
        "device": str(jax.devices()[0].device_kind), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
        "miou": {"ours": ours_meter.miou(), "torch": torch_meter.miou()},
        "torch_episodes_per_second": round(args.episodes / torch_s, 2),
        "ours_episodes_per_second": round(args.episodes / ours_s, 2),
        "ratio": round(torch_s / ours_s, 3),
        "versions": {"jax": jax.__version__, "torch": torch.__version__}}))


if __name__ == "__main__":
    main()
