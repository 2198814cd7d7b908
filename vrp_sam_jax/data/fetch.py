"""The public benchmark data fetched into the layouts the readers expect (`vrp-sam
fetch-data`): downloaded (resumable, the announced size checked), unpacked, and prepared as
the original protocol needs. Each step is skipped when its result is there, so a second run
after an interruption finishes the work.

- `lvis`: COCO 2017's images and the LVIS v1 annotations (`lvisdataset.org`), then Matcher's
  files built from them (`lvis.prepare_lvis`) under `<root>/LVIS`.
- `isic`: ISIC 2018 Task 1's training images and masks (the challenge's public bucket), then
  sorted into PATNet's class folders (`isic_classes.prepare_isic`) under `<root>/ISIC`.

No checksums are published for these files: a download is checked against the size the server
announces. Deepglobe's tiles (PATNet's Google Drive), the chest X-rays (Kaggle, behind a
login) and Matcher's own LVIS files (Google Drive) are not on plain HTTP; put them in place
as `docs/BENCHMARKS.md` shows.
"""

from __future__ import annotations

from pathlib import Path

from vrp_sam_jax.data import isic_classes, lvis
from vrp_sam_jax.errors import InputError
from vrp_sam_jax.storage.downloads import download, extract

# (URL, folder under the root the archive is unpacked into, what the archive holds there)
ARCHIVES = {
    "lvis": (
        ("https://dl.fbaipublicfiles.com/LVIS/lvis_v1_train.json.zip", "LVIS",
         "lvis_v1_train.json"),
        ("https://dl.fbaipublicfiles.com/LVIS/lvis_v1_val.json.zip", "LVIS", "lvis_v1_val.json"),
        ("http://images.cocodataset.org/zips/train2017.zip", "LVIS/coco", "train2017"),
        ("http://images.cocodataset.org/zips/val2017.zip", "LVIS/coco", "val2017"),
    ),
    "isic": (
        ("https://isic-challenge-data.s3.amazonaws.com/2018/ISIC2018_Task1-2_Training_Input.zip",
         "ISIC", "ISIC2018_Task1-2_Training_Input"),
        ("https://isic-challenge-data.s3.amazonaws.com/2018/"
         "ISIC2018_Task1_Training_GroundTruth.zip", "ISIC", "ISIC2018_Task1_Training_GroundTruth"),
    ),
}
DATASETS = tuple(ARCHIVES)


def source_url(url: str, mirror: str | None) -> str:
    """`url`, or the same file name under `mirror` (a copy of the files, one folder)."""
    return url if mirror is None else f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[1]}"


def fetch(dataset: str, root: str | Path, mirror: str | None = None,
          progress: bool = True) -> dict:
    """Download, unpack and prepare `dataset` under `root`; returns what was done."""
    if dataset not in ARCHIVES:
        raise InputError(f"unknown dataset {dataset!r} ({', '.join(DATASETS)})")
    root = Path(root)
    done: dict = {"dataset": dataset, "root": str(root), "unpacked": [], "present": []}
    for url, folder, holds in ARCHIVES[dataset]:
        target = root / folder
        if (target / holds).exists():
            done["present"].append(holds)
            continue
        archive = download(source_url(url, mirror), target / url.rsplit("/", 1)[1],
                           progress=progress)
        extract(archive, target)
        archive.unlink()  # tens of GB for COCO: the unpacked files are what is kept
        done["unpacked"].append(holds)
    if dataset == "lvis":
        out = root / "LVIS"
        missing = [(split, out / f"lvis_v1_{split}.json") for split in ("train", "val")
                   if not (out / f"lvis_{split}.pkl").is_file()]
        done["prepared"] = lvis.prepare_lvis(missing, out) if missing else []
    else:
        done["prepared"] = isic_classes.prepare_isic(root / "ISIC", progress=progress)
    return done
