"""`vrp-sam sam-everything`: SAM's automatic mask generator over image files, with its outputs
written the way the official `scripts/amg.py` writes them.

Per image NAME: with `png`, a folder NAME/ holding one PNG per mask (0.png, 1.png, ...,
largest first as generated), `metadata.csv` (the official columns) and `overlay.png`; with
`coco-rle`, NAME.json (the records, masks as COCO RLE) and NAME_overlay.png. Each output is
written under a temporary name and renamed when whole; a rerun replaces it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam_port.amg import coco_encode_rle, rle_to_mask
from vrp_sam_jax.storage.files import replacing, write_atomic, write_text_atomic
from vrp_sam_jax.storage.image_io import read_image, require_images, write_mask
from vrp_sam_jax.storage.outputs import output_dir, output_names

FORMATS = ("png", "coco-rle")
METADATA_HEADER = ("id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,"
                   "predicted_iou,stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h")


def colour_overlay(image: np.ndarray, masks: Sequence[np.ndarray], alpha: float = 0.55,
                   seed: int = 0) -> np.ndarray:
    """The image with every mask tinted in its own colour, larger masks first so smaller ones
    stay visible on top."""
    out = image.astype(np.float32)
    colours = np.random.default_rng(seed).uniform(40, 255, size=(len(masks), 3))
    for i in sorted(range(len(masks)), key=lambda i: -int(masks[i].sum())):
        m = masks[i]
        out[m] = (1 - alpha) * out[m] + alpha * colours[i]
    return out.astype(np.uint8)


def _metadata_row(i: int, record: dict[str, Any]) -> str:
    fields = [i, record["area"], *record["bbox"], *record["point_coords"][0],
              record["predicted_iou"], record["stability_score"], *record["crop_box"]]
    return ",".join(str(f) for f in fields)


def write_outputs(image: np.ndarray, records: list[dict[str, Any]], out: Path, name: str,
                  fmt: str) -> Path:
    """Write one image's masks (records with uncompressed-RLE segmentations); returns the
    folder (png) or JSON file (coco-rle) written."""
    masks = [rle_to_mask(r["segmentation"]) for r in records]
    picture = Image.fromarray(colour_overlay(image, masks))
    if fmt == "png":
        final = out / name
        with replacing(final, directory=True) as partial:
            for i, mask in enumerate(masks):
                write_mask(partial / f"{i}.png", mask)
            rows = [METADATA_HEADER] + [_metadata_row(i, r) for i, r in enumerate(records)]
            (partial / "metadata.csv").write_text("\n".join(rows))
            picture.save(partial / "overlay.png")
            if final.is_dir():  # this image's masks from an earlier run, replaced whole
                shutil.rmtree(final)
        return final
    coco = [{**r, "segmentation": coco_encode_rle(r["segmentation"])} for r in records]
    final = out / f"{name}.json"
    write_atomic(out / f"{name}_overlay.png", picture.save)
    write_text_atomic(final, json.dumps(coco))
    return final


def segment_files(generator: Any, images: Sequence[str | Path], output_dir_path: str | Path,
                  fmt: str = "png") -> list[dict[str, Any]]:
    """Run `generator` (a `SamAutomaticMaskGenerator` in uncompressed_rle mode) on each image
    file and write its outputs under `output_dir_path`. Every image is checked readable before
    any work."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, is {fmt!r}")
    if generator.output_mode != "uncompressed_rle":
        raise ValueError("segment_files needs a generator with output_mode='uncompressed_rle'")
    require_images(images)
    out = output_dir(output_dir_path)
    written = []
    for path, name in zip(images, output_names(images), strict=True):
        image = read_image(path)
        records = generator.generate(image)
        target = write_outputs(image, records, out, name, fmt)
        written.append({"image": str(path), "masks": len(records), "output": str(target)})
    return written
