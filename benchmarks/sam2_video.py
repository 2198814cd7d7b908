"""SAM 2 video propagation, frames per second: ours vs the official `SAM2VideoPredictor`,
same device, same run.

    python benchmarks/sam2_video.py --model-type sam2.1_hiera_tiny --frames 8

Both carry the same random weights (the official modules, converted through the `.pt`
layout). A synthetic clip (a disk moving over noise, JPEG frames at 640x480) is loaded by
each predictor, the first frame's disk given as a mask (`add_new_mask`), then
`propagate_in_video` runs over the whole clip: every frame's image encoder, memory
attention, decoder and memory encoder, and the masks at the video's size. Timed: the
second pass of each (the first compiles ours and warms PyTorch). Prints one JSON line:
frames per second of each, the ratio ours / official (above 1: ours is faster), our first
pass's extra seconds (compilation), and the largest difference of the last frame's logits.
Needs the test extra and `sam2` (README).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # noqa: E402,F401  (torchvision stand-in for sam2's imports)
import numpy as np  # noqa: E402
import sam2.utils.misc  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from timing import torch_device  # noqa: E402
from torch_sam2 import (  # noqa: E402
    build_torch_sam2,
    connected_components,
    save_official_checkpoint,
)

import sam_port  # noqa: E402
from sam_port.sam2_video_predictor import SAM2VideoPredictor  # noqa: E402

HEIGHT, WIDTH = 480, 640


def write_clip(folder: Path, frames: int) -> np.ndarray:
    """JPEG frames `0.jpg` ... of a disk moving right over noise; the first frame's disk."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    for t in range(frames):
        disk = np.hypot(yy - 240, xx - 200 - 12 * t) < 90
        grey = disk * 180 + rng.integers(0, 60, (HEIGHT, WIDTH))
        Image.fromarray(np.repeat(grey[..., None], 3, -1).astype(np.uint8)).save(
            folder / f"{t}.jpg")
    return np.hypot(yy - 240, xx - 200) < 90


def measure(model_type: str, frames: int = 8) -> dict:
    """Frames per second of propagation over `frames` frames, ours and the official's."""
    # the official hole filling needs its CUDA extension's connected components off a GPU
    sam2.utils.misc.get_connected_components = connected_components
    config = sam_port.get_sam2_config(model_type)
    device = torch_device()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        official = build_torch_sam2(config, seed=0, video=True)
        ours = SAM2VideoPredictor(sam_port.load_sam(save_official_checkpoint(
            official, work / f"{model_type}.pt")))
        official = official.to(device)
        (work / "frames").mkdir()
        mask = write_clip(work / "frames", frames)

        def run(predictor, state, **kwargs) -> tuple[float, np.ndarray]:
            predictor.reset_state(state)
            predictor.add_new_mask(state, 0, 1, mask)
            start = time.perf_counter()
            *_, (_, _, last) = predictor.propagate_in_video(state, **kwargs)
            last = last.cpu().numpy() if isinstance(last, torch.Tensor) else last
            return time.perf_counter() - start, last

        with torch.no_grad():
            state = official.init_state(str(work / "frames"))
            run(official, state)
            torch_seconds, torch_last = run(official, state)
        state = ours.init_state(work / "frames")
        first_seconds, _ = run(ours, state, progress=False)
        ours_seconds, ours_last = run(ours, state, progress=False)
    return {"benchmark": "sam2_video_propagation", "model_type": model_type,
            "video": f"{frames} frames {WIDTH}x{HEIGHT}", "device": device,
            "torch_frames_per_second": round(frames / torch_seconds, 3),
            "ours_frames_per_second": round(frames / ours_seconds, 3),
            "ratio": round(torch_seconds / ours_seconds, 2),
            "compile_seconds": round(first_seconds - ours_seconds, 1),
            "max_abs_last_frame_diff": float(np.abs(ours_last - torch_last).max())}


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-type", default="sam2.1_hiera_tiny",
                        choices=sorted(sam_port.SAM2_CONFIGS))
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(measure(args.model_type, args.frames)))
