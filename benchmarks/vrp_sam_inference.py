"""VRP-SAM inference per target: ours vs the PyTorch reference (tests/torch_vrp.py, the
release's computation), same weights, same device, same run.

    python benchmarks/vrp_sam_inference.py --backbone resnet50 --sam-type tiny \\
        --image-size 512 --targets 8 --batch 8

The targets are uint8 images of different original sizes. PyTorch computes each target as
the release does: reference and target from scratch, batch 1, logits resized to the
original size. Ours is `VRPSamPredictor`: the reference encoded once, then (1) one target per
call (`predict`) and (2) `--batch` targets per call (`predict_many`: one compiled program for
every size). Before timing, the logits of the first target are compared. Prints one JSON
line: seconds per target and the ratios torch / ours (above 1: ours faster).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from reference_pair import add_model_args, build_pair  # noqa: E402
from timing import interleaved_medians, torch_device, torch_synced  # noqa: E402

from vrp_sam_jax.inference import VRPSamPredictor  # noqa: E402
from vrp_sam_jax.models import LoadedModel  # noqa: E402
from vrp_sam_jax.transforms.preprocess import prepare_image  # noqa: E402


def measure(backbone: str, sam_type: str, image_size: int, num_targets: int, batch: int,
            repeats: int = 3) -> dict:
    pair = build_pair(backbone, sam_type, image_size)
    device = torch_device()
    torch_model = pair.torch_model.to(device).eval()
    rng = np.random.default_rng(0)
    s = image_size
    reference = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
    prompt = np.zeros((s, s), np.float32)
    prompt[s // 4 : 3 * s // 4, s // 3 : 2 * s // 3] = 1
    sizes = [(int(h), int(w)) for h, w in rng.integers(s // 2, 3 * s // 2, (num_targets, 2))]
    targets = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]

    def to_torch(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.moveaxis(prepare_image(image, s), -1, 0).copy()).to(device)

    t_ref = to_torch(reference)[None, None]
    t_prompt = torch.from_numpy(prompt).to(device)[None, None]

    def torch_one(image: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = torch_model(to_torch(image)[None], t_ref, t_prompt)
            full = F.interpolate(logits[:, None], image.shape[:2], mode="bilinear",
                                 align_corners=True)
        return full[0, 0].cpu().numpy()

    predictor = VRPSamPredictor(LoadedModel(pair.config, pair.params, {}))
    predictor.set_references([reference], [prompt])
    _, got = predictor.predict(targets[0])
    with torch.no_grad():
        want_grid = torch_model(to_torch(targets[0])[None], t_ref, t_prompt)[0].cpu().numpy()
    diff = float(np.abs(got - want_grid).max())
    list(predictor.predict_many(targets[:batch], batch))  # compile

    run_torch = torch_synced(lambda: [torch_one(t) for t in targets])
    torch_s, single_s, batched_s = interleaved_medians(
        run_torch, lambda: [predictor.predict(t) for t in targets],
        lambda: list(predictor.predict_many(targets, batch)), repeats=repeats)
    n = num_targets
    return {"benchmark": "vrp_sam_inference", "backbone": backbone, "sam_type": sam_type,
            "image": f"{s}x{s}", "targets": n, "batch": batch, "torch_device": device,
            "max_abs_logit_diff": diff,
            "torch_seconds_per_target": round(torch_s / n, 4),
            "ours_one_per_call_seconds_per_target": round(single_s / n, 4),
            "ours_batched_seconds_per_target": round(batched_s / n, 4),
            "ratio_one_per_call": round(torch_s / single_s, 3),
            "ratio": round(torch_s / batched_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(parser, "resnet50", 512)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.backbone, args.sam_type, args.image_size, args.targets,
                             args.batch, args.repeats)))


if __name__ == "__main__":
    main()
