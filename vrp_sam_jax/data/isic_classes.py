"""ISIC2018 Task 1's training images sorted into PATNet's class folders (`vrp-sam
prepare-isic`).

PATNet (slei109/PATNet, `data/isic.py`) reads `ISIC2018_Task1-2_Training_Input/<c>/*.jpg` for
c = 1, 2, 3 and ships the class of each image (`data/isic/class_id.csv`, the ISIC 2017
diagnosis: melanoma, nevus, seborrheic_keratosis), leaving the sorting to its users. The
folders are numbered in the classes' alphabetical order (melanoma 1, nevus 2,
seborrheic_keratosis 3), as the CD-FSS code that does the sorting numbers them. Each image is
hard-linked into its folder (copied where the file system cannot link), through a temporary
and a rename, so an interrupted run leaves no partial file and a second run skips what is done.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from vrp_sam_jax.data.splits import PATNET_CLASS_NAMES
from vrp_sam_jax.errors import DataError
from vrp_sam_jax.storage.files import write_atomic

CLASS_FILE = "patnet_isic_class_id.csv"  # PATNet's data/isic/class_id.csv, as it is
INPUT = "ISIC2018_Task1-2_Training_Input"


def class_of_image() -> dict[str, int]:
    """Image id -> class folder (1-based), from PATNet's class file."""
    text = (resources.files("vrp_sam_jax.data") / "split_files" / CLASS_FILE).read_text()
    numbers = {name: i + 1 for i, name in enumerate(PATNET_CLASS_NAMES["isic"])}
    return {r["ID"]: numbers[r["Class"]] for r in csv.DictReader(io.StringIO(text))}


def _link_or_copy(source: Path, temporary: Path) -> None:
    """`source`'s bytes at `temporary` (an empty file of ours): a hard link, or a copy."""
    temporary.unlink()
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)


def prepare_isic(root: str | Path, progress: bool = True) -> dict:
    """Sort `root/ISIC2018_Task1-2_Training_Input/<id>.jpg` into `<c>/<id>.jpg` (`root` may
    be the folder holding `ISIC/`); returns counts of what was placed, found already placed,
    and missing."""
    root = Path(root)
    root = root / "ISIC" if (root / "ISIC" / INPUT).is_dir() else root
    images = root / INPUT
    if not images.is_dir():
        raise DataError(f"{images}: missing (unpack ISIC2018_Task1-2_Training_Input.zip there)")
    placed = present = 0
    missing = []
    for image_id, folder in tqdm(sorted(class_of_image().items()), desc="prepare-isic",
                                 unit="img", disable=not progress):
        target = images / str(folder) / f"{image_id}.jpg"
        if target.is_file():
            present += 1
            continue
        source = images / f"{image_id}.jpg"
        if not source.is_file():
            missing.append(image_id)
            continue
        target.parent.mkdir(exist_ok=True)
        write_atomic(target, lambda temporary, source=source: _link_or_copy(source, temporary))
        placed += 1
    if placed + present == 0:
        raise DataError(f"{images}: none of the {len(missing)} images of PATNet's class file "
                        "is there")
    return {"root": str(root), "placed": placed, "already_placed": present,
            "missing": len(missing), "first_missing": missing[:5]}
