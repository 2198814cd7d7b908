"""Per-image COCO-20i class masks from the instance annotations (`vrp-sam prepare-coco`).

For each image of `instances_<split>.json`: a uint8 PNG of the image's size, 0 = background,
value k+1 where category k (0-based index in ascending category id) lies; non-crowd
annotations are filled in annotation order (a later one overwrites an earlier one). Files are
written atomically (temporary name, then rename), so an interrupted run resumes where it
stopped by skipping complete files; the run ends by verifying its output.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from vrp_sam_jax.data.sources import DataError
from vrp_sam_jax.storage.files import write_atomic

SPLITS = ("train2014", "val2014")
VERIFY_SAMPLE = 64


def _load(annotation_file: Path):
    from pycocotools.coco import COCO

    if not annotation_file.is_file():
        raise DataError(f"{annotation_file}: no such annotation file")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(annotation_file))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{annotation_file}: not a COCO instances file ({e!r})") from e


def category_values(coco) -> dict[int, int]:
    """COCO category id -> mask value (1-based index in ascending id order)."""
    return {cat_id: i + 1 for i, cat_id in enumerate(sorted(coco.getCatIds()))}


def class_mask(coco, image_id: int, values: dict[int, int]) -> np.ndarray:
    info = coco.imgs[image_id]
    mask = np.zeros((info["height"], info["width"]), np.uint8)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=False)):
        mask[coco.annToMask(ann) > 0] = values[ann["category_id"]]
    return mask


def mask_path(out_dir: Path, file_name: str) -> Path:
    return out_dir / (Path(file_name).stem + ".png")


def build_masks(annotation_file: str | Path, out_dir: str | Path, *, progress: bool = True,
                verify_sample: int = VERIFY_SAMPLE) -> dict:
    """Write every image's class mask under `out_dir` (skipping complete ones) and verify.
    Returns a summary: images, written, skipped, categories."""
    annotation_file, out_dir = Path(annotation_file), Path(out_dir)
    coco = _load(annotation_file)
    values = category_values(coco)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_ids = sorted(coco.imgs)
    written = skipped = 0
    for image_id in tqdm(image_ids, desc=f"masks {out_dir.name}", disable=not progress,
                         unit="img"):
        path = mask_path(out_dir, coco.imgs[image_id]["file_name"])
        if path.is_file():
            skipped += 1
            continue
        mask = class_mask(coco, image_id, values)
        write_atomic(path, lambda p, m=mask: Image.fromarray(m, mode="L").save(p, format="PNG"))
        written += 1
    verify(coco, out_dir, values, image_ids, verify_sample, progress)
    summary = {"annotation_file": str(annotation_file), "images": len(image_ids),
               "written": written, "skipped": skipped, "categories": len(values)}
    (out_dir / "_prepare_coco.json").write_text(json.dumps(summary, indent=1))
    return summary


def verify(coco, out_dir: Path, values: dict[int, int], image_ids: Iterable[int],
           sample: int, progress: bool = False) -> None:
    """Every image has a readable mask of its size with values in 0..#categories; a sample
    of masks (the first and last, and a seeded random set) is rebuilt and compared exactly."""
    image_ids = list(image_ids)
    for image_id in tqdm(image_ids, desc="verify", disable=not progress, unit="img"):
        info = coco.imgs[image_id]
        path = mask_path(out_dir, info["file_name"])
        if not path.is_file():
            raise DataError(f"{path}: missing mask for image id {image_id}")
        try:
            with Image.open(path) as img:
                size, mode = img.size, img.mode
        except OSError as e:
            raise DataError(f"{path}: unreadable mask ({e}); delete it and run again") from e
        if size != (info["width"], info["height"]) or mode != "L":
            raise DataError(f"{path}: {mode} {size[0]}x{size[1]}, expected L "
                            f"{info['width']}x{info['height']}; delete it and run again")
    rng = np.random.default_rng(0)
    chosen = set(rng.choice(image_ids, min(sample, len(image_ids)), replace=False).tolist())
    chosen |= {image_ids[0], image_ids[-1]} if image_ids else set()
    for image_id in sorted(chosen):
        path = mask_path(out_dir, coco.imgs[image_id]["file_name"])
        with Image.open(path) as img:
            stored = np.asarray(img)
        if not np.array_equal(stored, class_mask(coco, image_id, values)):
            raise DataError(f"{path}: differs from the mask rebuilt from the annotations; "
                            "delete the folder's masks and run again")


def prepare_coco(coco_root: str | Path, splits: Iterable[str] = SPLITS, *,
                 progress: bool = True) -> list[dict]:
    """Masks for a COCO 2014 root holding `annotations/instances_<split>.json`, written to
    `annotations/<split>/` (the layout HSNet and the release read)."""
    root = Path(coco_root).expanduser()
    out = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"COCO split must be one of {SPLITS}, got {split!r}")
        annotations = root / "annotations"
        out.append(build_masks(annotations / f"instances_{split}.json", annotations / split,
                               progress=progress))
    return out
