"""SAM's automatic mask generator: images per second, ours vs the official, same run.

    python benchmarks/automatic_mask_generator.py --model-type vit_b --points-per-side 16

Both generators carry the same random weights (the official modules, converted) and segment
the same synthetic picture (coloured discs) with the same settings; the time is `generate()`
end to end: image embedding, the point batches through the decoder, filtering, NMS and RLE.
The thresholds are permissive (predicted IoU and stability 0) so that, with random weights,
the post-processing runs on many masks as it would with real ones. The official's NMS is the
tests' plain-torch stand-in (torchvision's C ops do not load beside the pinned torch). Prints
one JSON line; needs the test extra.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # noqa: E402,F401  (torchvision stand-in for segment_anything's import)
import numpy as np  # noqa: E402
from segment_anything import SamAutomaticMaskGenerator as TorchGenerator  # noqa: E402
from timing import interleaved_medians, torch_device, torch_synced  # noqa: E402
from torch_sam import build_torch_sam, state_dict_numpy  # noqa: E402

import sam_port  # noqa: E402
from sam_port.checkpoint import convert_sam_state_dict  # noqa: E402


def scene(h: int, w: int, seed: int = 3) -> np.ndarray:
    """Coloured discs on a dark background, with a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.full((h, w, 3), 30, np.uint8)
    for _ in range(8):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.2) * min(h, w)
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(40, 255, 3)
    return np.clip(image + rng.integers(0, 10, size=image.shape), 0, 255).astype(np.uint8)


def measure(model_type: str, points_per_side: int, height: int, width: int,
            repeats: int = 2, crop_n_layers: int = 0) -> dict:
    config = sam_port.get_config(model_type)
    device = torch_device()
    torch_model = build_torch_sam(config, seed=0).to(device)
    ours = convert_sam_state_dict(state_dict_numpy(torch_model), model_type, "benchmark")
    kwargs = dict(points_per_side=points_per_side, pred_iou_thresh=0.0,
                  stability_score_thresh=0.0, crop_n_layers=crop_n_layers)
    reference = TorchGenerator(torch_model, **kwargs)
    generator = sam_port.SamAutomaticMaskGenerator(ours, **kwargs)
    image = scene(height, width)

    run_torch = torch_synced(lambda: reference.generate(image))

    def run_ours():
        return generator.generate(image)

    start = time.perf_counter()
    got = run_ours()
    first_s = time.perf_counter() - start
    want = run_torch()  # also the warm-up
    torch_s, ours_s = interleaved_medians(run_torch, run_ours, repeats=repeats)
    return {
        "benchmark": "automatic_mask_generator", "model_type": model_type,
        "image": f"{height}x{width}", "points_per_side": points_per_side,
        "crop_n_layers": crop_n_layers, "torch_device": device,
        "masks": {"torch": len(want), "ours": len(got)},
        "torch_images_per_second": round(1 / torch_s, 4),
        "ours_images_per_second": round(1 / ours_s, 4),
        "ours_first_call_seconds": round(first_s, 1),
        "ratio": round(torch_s / ours_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-type", default="vit_b",
                        choices=["vit_b", "vit_l", "vit_h", "tiny"])
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--crop-n-layers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(measure(args.model_type, args.points_per_side, args.height, args.width,
                             args.repeats, args.crop_n_layers)))


if __name__ == "__main__":
    main()
