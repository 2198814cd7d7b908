"""`vrp-sam sam-demo`: a full SAM round trip on a generated image, no download.

A SAM (the tiny config with random weights by default, or a real checkpoint) is saved with
orbax, loaded back, and the loaded model segments a generated image from one point through
`SamPredictor`. It checks that the round trip is exact and reports timings; with random weights
the mask itself means nothing. (`vrp-sam demo` is the VRP-SAM demo that learns.)
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image

import sam_port
from vrp_sam_jax.storage.image_io import overlay, write_mask


def generated_image(height: int = 480, width: int = 640, seed: int = 0) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
    """A textured background with one coloured ellipse; returns (image, ellipse mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([60 + 80 * xx / width, 90 + 60 * yy / height, 120 + 0 * xx], -1)
    image += rng.normal(0, 12, size=image.shape)
    cy, cx, ry, rx = height * 0.55, width * 0.45, height * 0.22, width * 0.18
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    image[mask] = (230, 190, 40) + rng.normal(0, 8, size=(mask.sum(), 3))
    return np.clip(image, 0, 255).astype(np.uint8), mask


def run(model_type: str | None, checkpoint: str | None, output_dir: Path, seed: int = 0) -> dict:
    """With a checkpoint, its model type is checked (or inferred when `model_type` is None);
    without one, a randomly initialised SAM of `model_type` (default tiny) is used."""
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if checkpoint:
        sam = sam_port.load_sam(checkpoint, model_type)
    else:
        model_type = model_type or "tiny"
        config = sam_port.get_config(model_type)
        sam = sam_port.LoadedSam(model_type, config, sam_port.init_params(config, seed))
    with tempfile.TemporaryDirectory() as tmp:
        sam_port.save_sam(sam, Path(tmp) / "sam")
        loaded = sam_port.load_sam(Path(tmp) / "sam", sam.model_type)
    diffs = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                         sam.params, loaded.params)
    round_trip_diff = max(jax.tree.leaves(diffs))

    image, truth = generated_image(seed=seed)
    ys, xs = np.nonzero(truth)
    point = np.array([[xs.mean(), ys.mean()]])
    predictor = sam_port.SamPredictor(loaded)
    t0 = time.perf_counter()
    predictor.set_image(image)
    jax.block_until_ready(predictor.embedding_nhwc)
    t1 = time.perf_counter()
    masks, scores, _ = predictor.predict(point_coords=point, point_labels=np.array([1]),
                                         multimask_output=True)
    t2 = time.perf_counter()
    best = masks[int(np.argmax(scores))]
    Image.fromarray(image).save(output_dir / "image.png")
    write_mask(output_dir / "mask.png", best)
    Image.fromarray(overlay(image, best, points=point)).save(output_dir / "overlay.png")
    return {
        "model_type": loaded.model_type,
        "weights": "checkpoint" if checkpoint else "random",
        "checkpoint_round_trip_max_abs_diff": round_trip_diff,
        "image": list(image.shape[:2]),
        "point": point[0].round(1).tolist(),
        "iou_predictions": [round(float(s), 4) for s in scores],
        "mask_pixels": int(best.sum()),
        "embedding_seconds": round(t1 - t0, 3),
        "predict_seconds": round(t2 - t1, 3),
        "seconds": round(time.perf_counter() - start, 3),
        "output_dir": str(output_dir),
    }


def main(model_type: str | None, checkpoint: str | None, output_dir: str) -> int:
    result = run(model_type, checkpoint, Path(output_dir))
    if result["checkpoint_round_trip_max_abs_diff"] != 0.0:
        raise RuntimeError(f"orbax round trip changed the parameters: {result}")
    print(json.dumps(result))
    return 0
