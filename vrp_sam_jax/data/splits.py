"""Fold classes (docs/COMPUTATION.md §9) and the standard split lists, shipped with the package
(built from HSNet's files and PFENet's PASCAL lists by `tools/build_split_files.py`)."""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources

import numpy as np

NUM_FOLDS = 4
BENCHMARK_CLASSES = {"pascal": 20, "coco": 80, "fss": 1000, "toy": 8}
FOLD_BENCHMARKS = ("pascal", "coco", "toy")
SPLITS = ("trn", "val")
PASCAL_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")
COCO_CLASSES = (  # ascending category id
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")
# COCO-20i fold f -> the PASCAL classes (0-based) whose COCO counterpart is tested in COCO fold
# f: the cross-domain (COCO -> PASCAL) split, so no test class was seen in training.
COCO_TO_PASCAL_FOLDS = {0: [0, 3, 8, 10, 11, 14], 1: [1, 5, 12, 17],
                        2: [2, 6, 15, 16, 18, 19], 3: [4, 7, 9, 13]}


def _files():
    return resources.files("vrp_sam_jax.data") / "split_files"


def check_fold(benchmark: str, fold: int) -> None:
    if benchmark not in FOLD_BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r} for folds "
                         f"({', '.join(FOLD_BENCHMARKS)})")
    if fold not in range(NUM_FOLDS):
        raise ValueError(f"fold must be 0..{NUM_FOLDS - 1}, got {fold}")


def test_classes(benchmark: str, fold: int) -> list[int]:
    """0-based class indices tested in `fold` (PASCAL: 5f..5f+4; COCO: f, f+4, ..., f+76;
    the toy benchmark: 2f, 2f+1)."""
    check_fold(benchmark, fold)
    if benchmark == "coco":
        return [fold + NUM_FOLDS * v for v in range(20)]
    per_fold = BENCHMARK_CLASSES[benchmark] // NUM_FOLDS
    return list(range(per_fold * fold, per_fold * fold + per_fold))


def train_classes(benchmark: str, fold: int) -> list[int]:
    """The other classes of the benchmark (15 for PASCAL, 60 for COCO, 6 for the toy)."""
    tested = set(test_classes(benchmark, fold))
    return [c for c in range(BENCHMARK_CLASSES[benchmark]) if c not in tested]


@lru_cache(maxsize=1)
def _pascal() -> dict:
    with gzip.open(_files() / "hsnet_pascal.json.gz", "rt") as f:
        return json.load(f)


def pascal_metadata(split: str, fold: int) -> list[tuple[str, int]]:
    """HSNet's PASCAL-5i list: (image name, 0-based class) in file order. `val` is the fold's
    own file; `trn` concatenates the other folds' training files (as HSNet does)."""
    check_fold("pascal", fold)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folds = [fold] if split == "val" else [f for f in range(NUM_FOLDS) if f != fold]
    out = []
    for f in folds:
        for line in _pascal()[split][str(f)]:
            name, cls = line.split("__")
            out.append((name, int(cls) - 1))
    return out


@lru_cache(maxsize=1)
def _coco() -> dict[str, np.ndarray]:
    with np.load(_files() / "hsnet_coco.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def coco_classwise(split: str, fold: int) -> dict[int, list[str]]:
    """HSNet's COCO-20i class -> image names (`val2014/COCO_val2014_000000xxxxxx.jpg`), in the
    original list order (the sampler draws by position). Classes without images in this
    split/fold (the other folds' classes) are left out."""
    check_fold("coco", fold)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = "train2014" if split == "trn" else "val2014"
    prefix = f"{split}/fold{fold}/class"
    out = {}
    for key, ids in _coco().items():
        if key.startswith(prefix) and len(ids):
            out[int(key[len(prefix):])] = [f"{folder}/COCO_{folder}_{i:012d}.jpg"
                                           for i in ids.tolist()]
    return dict(sorted(out.items()))


# FSS-1000's class numbers: each split's categories follow the previous split's
FSS_SPLIT_OFFSET = {"trn": 0, "val": 520, "test": 760}


@lru_cache(maxsize=1)
def fss_categories() -> dict[str, list[str]]:
    """FSS-1000 category names of HSNet's trn (520) / val (240) / test (240) splits."""
    return json.loads((_files() / "hsnet_fss.json").read_text())


@lru_cache(maxsize=1)
def _pfenet() -> dict:
    with gzip.open(_files() / "pfenet_pascal.json.gz", "rt") as f:
        return json.load(f)


def pfenet_pascal(split: str, fold: int) -> tuple[list[str], dict[int, list[str]]]:
    """PFENet's PASCAL-5i lists, which the VRP-SAM release reads: the image stems of `split`
    ('trn': images with a training class of `fold`; 'val': images with a test class), and
    0-based class -> image stems (the classes that cover >= 2048 pixels), in file order."""
    check_fold("pascal", fold)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    lists = _pfenet()["train" if split == "trn" else "val"][str(fold)]
    return list(lists["images"]), {int(c) - 1: list(v) for c, v in lists["classes"].items()}


# PATNet's class folders 1.. in order. Deepglobe: data/preprocess.py's `labelset` read as
# OpenCV's BGR, i.e. the DeepGlobe colours of agriculture, urban, rangeland, forest, water,
# barren; ISIC: `isic_classes` numbers class_id.csv's diagnoses alphabetically.
PATNET_CLASS_NAMES = {
    "deepglobe": ("agriculture_land", "urban_land", "rangeland", "forest_land", "water",
                  "barren_land"),
    "isic": ("melanoma", "nevus", "seborrheic_keratosis"),
    "lung": ("lung",),
}


def class_name(benchmark: str, class0: int) -> str:
    if benchmark in PATNET_CLASS_NAMES:
        return PATNET_CLASS_NAMES[benchmark][class0]
    if benchmark == "pascal":
        return PASCAL_CLASSES[class0]
    if benchmark == "coco":
        return COCO_CLASSES[class0]
    if benchmark == "toy":
        from vrp_sam_jax.data.toy_benchmark import CLASS_NAMES

        return CLASS_NAMES[class0]
    return str(class0)
