"""Evaluation episodes per second: ours (`evaluate_params`: input pipeline + one jitted step per
batch, areas on the device) vs the PyTorch reference model fed by the same pipeline, same
weights, same episodes, same run.

    python benchmarks/evaluation.py --backbone resnet_tiny --sam-type tiny --image-size 128 \\
        --episodes 96 --batch 8

Both sides load the episodes with the same `EpisodeLoader` (toy benchmark, mask condition)
and count the same metric; the mIoU of the two must agree. Prints one JSON line: episodes per
second for each and the ratio ours / torch (above 1: ours faster).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from reference_pair import add_model_args, build_pair  # noqa: E402
from timing import interleaved_medians, torch_device  # noqa: E402

from vrp_sam_jax.data import protocols, splits  # noqa: E402
from vrp_sam_jax.data.pipeline import EpisodeLoader  # noqa: E402
from vrp_sam_jax.data.sources import ToySource  # noqa: E402
from vrp_sam_jax.evaluation.episodes import evaluate_params, evaluation_options  # noqa: E402
from vrp_sam_jax.evaluation.metric import IoUMeter, episode_areas  # noqa: E402
from vrp_sam_jax.runtime.sharding import make_mesh  # noqa: E402
from vrp_sam_jax.transforms.preprocess import normalize_image  # noqa: E402


def measure(backbone: str, sam_type: str, image_size: int, num_episodes: int,
            batch: int, repeats: int = 3) -> dict:
    """Evaluation episodes per second (toy benchmark, 1-shot, mask), ours and the PyTorch
    reference's, both fed by the same `EpisodeLoader`."""
    pair = build_pair(backbone, sam_type, image_size)
    device = torch_device()
    torch_model = pair.torch_model.to(device).eval()
    config, params = pair.config, jax.device_put(pair.params)
    fold, classes = 0, splits.test_classes("toy", 0)
    episodes = protocols.episodes("toy", fold, 1, "hsnet", num_episodes)
    mesh = make_mesh(devices=jax.devices()[:1])

    def ours(eps):
        return evaluate_params(config, params, ToySource(), eps, classes, "mask", mesh,
                               batch, progress=False)

    def to_torch(x: np.ndarray, channels: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, channels))).to(device)

    def reference(eps):
        meter = IoUMeter(classes)
        options = evaluation_options(image_size, "mask")
        loader = EpisodeLoader(ToySource(), eps, batch, options, process_index=0,
                               process_count=1)
        for host_batch in loader:
            query = to_torch(normalize_image(host_batch["query_image"]), 1)
            support = to_torch(normalize_image(host_batch["support_images"]), 2)
            masks = torch.from_numpy(host_batch["support_masks"]).to(device)
            with torch.no_grad():
                logits = torch_model(query, support, masks).cpu().numpy()
            areas = episode_areas(logits >= 0, host_batch["query_mask"],
                                  host_batch["query_ignore"])
            valid = host_batch["valid"]
            meter.update(areas[valid], host_batch["class0"][valid])
        return meter

    ours(episodes[:batch])  # compile
    reference(episodes[:batch])
    meters = {}
    torch_s, ours_s = interleaved_medians(
        lambda: meters.update(torch=reference(episodes)),
        lambda: meters.update(ours=ours(episodes)), repeats=repeats)
    ours_meter, torch_meter = meters["ours"], meters["torch"]
    return {
        "benchmark": "evaluation", "backbone": backbone, "sam_type": sam_type,
        "image": f"{image_size}x{image_size}", "batch": batch, "episodes": num_episodes,
        "torch_device": device, "miou": {"ours": ours_meter.miou(), "torch": torch_meter.miou()},
        "torch_episodes_per_second": round(num_episodes / torch_s, 2),
        "ours_episodes_per_second": round(num_episodes / ours_s, 2),
        "ratio": round(torch_s / ours_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(parser, "resnet_tiny", 128)
    parser.add_argument("--episodes", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.backbone, args.sam_type, args.image_size, args.episodes,
                             args.batch, args.repeats)))


if __name__ == "__main__":
    main()
