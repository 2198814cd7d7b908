"""LVIS-92i as Matcher defines it (aim-uofa/Matcher, `matcher/data/lvis.py`): its annotation
files, its category list and folds, the reader of its masks, and `vrp-sam prepare-lvis`, which
writes those files from the official LVIS v1 annotations.

The layout (Matcher's `datasets/README.md`)::

    LVIS/
      coco/train2017/*.jpg, coco/val2017/*.jpg   COCO 2017 images
      lvis_train.pkl, lvis_val.pkl               {category id: {image name: {"annotations":
                                                  [{"segmentation": ...}, ...]}}}

where an image name is its path under `coco/` (`val2017/000000000139.jpg`) and a segmentation
is COCO polygons, an RLE, or a 2-D array. Matcher keeps the categories with more than `shots`
images of the split ("eligible", in the file's key order); fold f of its 10 tests the eligible
validation categories f, f + 10, f + 20, ... (`len // 10` of them). Here `class0` is a
category's index in that eligible list, so fold f's classes are f + 10·v; images are named by
their stem (`000000000139`); the mask of (image, class) is the union of the class's instances.

The `.pkl` files are read with an unpickler that builds only plain containers and numpy
arrays: no code in them is run.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vrp_sam_jax.data import sources
from vrp_sam_jax.errors import DataError
from vrp_sam_jax.storage.files import write_bytes_atomic
from vrp_sam_jax.storage.paths import AnyPath, as_path

NUM_FOLDS = 10
EPISODES_PER_FOLD = 2300  # Matcher's `__len__` for evaluation
SPLIT_FILES = {"trn": "lvis_train.pkl", "val": "lvis_val.pkl"}
Annotations = dict[int, dict[str, dict]]  # category id -> image name -> {"annotations": [...]}

# What a Matcher annotation file may hold besides containers: numpy arrays (a mask given as an
# array). Nothing else is built.
_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, where: str):
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise DataError(f"{self.where}: the file pickles '{module}.{name}', which is not part "
                        "of LVIS annotations; refusing to execute it")


def read_annotations(path: AnyPath) -> Annotations:
    """A Matcher annotation file (`lvis_train.pkl` / `lvis_val.pkl`), checked for its shape."""
    if not path.is_file():
        raise DataError(f"{path}: missing (Matcher's LVIS-92i annotations; `vrp-sam "
                        "prepare-lvis` writes them from the LVIS v1 JSON)")
    try:
        data = _Unpickler(io.BytesIO(path.read_bytes()), str(path)).load()
    except DataError:
        raise
    except Exception as e:  # a damaged pickle raises many exception types
        raise DataError(f"{path}: unreadable pickle ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict) or not all(
            isinstance(images, dict) and all(isinstance(v, dict) and "annotations" in v
                                             for v in images.values())
            for images in data.values()):
        raise DataError(f"{path}: not LVIS-92i annotations ({{category id: {{image name: "
                        "{'annotations': [...]}}}})")
    return data


def eligible_categories(annotations: Annotations, shots: int) -> list[int]:
    """Matcher's `cat_ids`: the categories with more than `shots` images, in the file's order."""
    return [c for c in annotations if len(annotations[c]) > shots]


def fold_classes(num_eligible: int, fold: int) -> list[int]:
    """The class0s fold `fold` tests: eligible indices fold + 10·v for v < num_eligible // 10
    (Matcher's `class_ids_val`)."""
    if not 0 <= fold < NUM_FOLDS:
        raise ValueError(f"LVIS-92i has folds 0-{NUM_FOLDS - 1}, got {fold}")
    return [fold + NUM_FOLDS * v for v in range(num_eligible // NUM_FOLDS)]


def stem(image_name: str) -> str:
    return image_name.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def instance_mask(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """One instance's HxW bool mask, as Matcher's `get_mask`: polygons (detectron2's
    `polygons_to_bitmask`: pycocotools' frPyObjects, merge, decode), an RLE, or an array."""
    from pycocotools import mask as mask_util

    if isinstance(segmentation, list):
        polygons = [np.asarray(p, np.float64).ravel().tolist() for p in segmentation]
        mask = mask_util.decode(mask_util.merge(mask_util.frPyObjects(polygons, height, width)))
    elif isinstance(segmentation, dict):
        rle = segmentation
        if isinstance(rle.get("counts"), list):  # uncompressed RLE
            rle = mask_util.frPyObjects(rle, *rle["size"])
        mask = mask_util.decode(rle)
    elif isinstance(segmentation, np.ndarray) and segmentation.ndim == 2:
        mask = segmentation
    else:
        raise DataError(f"{where}: a segmentation must be polygons, an RLE or a 2-D array")
    mask = np.asarray(mask).astype(bool)
    if mask.shape != (height, width):
        raise DataError(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                        f"{width}x{height}")
    return mask


class LvisSource:
    """LVIS-92i's images and masks from Matcher's two files. `shots` decides the eligible
    categories, hence what `class0` names: the eligible validation categories first (the
    numbers evaluation reports), then the training file's eligible categories that are not
    among them, so that training episodes have class numbers too. The training file is read
    only when training asks for it."""

    benchmark = "lvis"

    def __init__(self, root: str | AnyPath, shots: int = 1):
        root = as_path(root)
        self.root = root / "LVIS" if (root / "LVIS" / SPLIT_FILES["val"]).is_file() else root
        if not (self.root / SPLIT_FILES["val"]).is_file():
            raise DataError(f"{root}: no LVIS-92i found (looked for "
                            f"{root / 'LVIS' / SPLIT_FILES['val']}, {root / SPLIT_FILES['val']})")
        self.shots = shots
        self._files: dict[str, Annotations] = {}
        self._names: dict[str, dict[str, str]] = {}  # split -> stem -> image name
        self._eligible: dict[str, list[int]] = {}  # split -> eligible category ids

    def annotations(self, split: str = "val") -> Annotations:
        """A split's file, read once."""
        if split not in self._files:
            self._files[split] = read_annotations(self.root / SPLIT_FILES[split])
            self._names[split] = {stem(name): name for images in self._files[split].values()
                                  for name in images}
        return self._files[split]

    def eligible(self, split: str = "val") -> list[int]:
        """A split's eligible category ids (`eligible_categories`), found once: every mask
        read looks its class up in them."""
        if split not in self._eligible:
            self._eligible[split] = eligible_categories(self.annotations(split), self.shots)
        return self._eligible[split]

    @property
    def categories(self) -> list[int]:
        """The eligible validation category ids: evaluation's `class0` indexes this list."""
        return self.eligible("val")

    def _all_categories(self) -> list[int]:
        """`categories`, then the training file's other eligible ones (read only if read)."""
        tested = self.categories
        if "trn" not in self._files:
            return tested
        known = set(tested)
        return tested + [c for c in self.eligible("trn") if c not in known]

    def classwise(self) -> dict[int, list[str]]:
        """class0 -> the stems of its validation images, in the file's order (what Matcher's
        evaluation draws from)."""
        annotations = self.annotations("val")
        return {i: [stem(name) for name in annotations[c]]
                for i, c in enumerate(self.categories)}

    def training_classwise(self, fold: int) -> dict[int, list[str]]:
        """class0 -> stems of the training file's eligible categories that fold `fold` does
        not test (Matcher's `class_ids_trn`), in the file's order."""
        training = self.annotations("trn")
        tested = self.categories
        held_out = {tested[c] for c in fold_classes(len(tested), fold)}
        number = {c: i for i, c in enumerate(self._all_categories())}
        return {number[c]: [stem(name) for name in training[c]]
                for c in self.eligible("trn") if c not in held_out}

    def _locate(self, name: str) -> tuple[str, str]:
        """(split, image name) of a stem: the validation file's, else the training file's."""
        for split in ("val", "trn"):
            if split == "val" or (self.root / SPLIT_FILES[split]).is_file():
                self.annotations(split)
                if name in self._names[split]:
                    return split, self._names[split][name]
        raise DataError(f"{self.root}: no LVIS-92i image {name!r} in "
                        f"{', '.join(SPLIT_FILES[s] for s in self._files)}")

    def image_file(self, image_name: str) -> AnyPath | BinaryIO:
        """The image file of an annotated image (`val2017/<file>`): under `coco/` here; its
        bytes in the packed form (`packed.PackedLvisSource`)."""
        path = self.root / "coco" / image_name
        if not path.is_file():
            raise DataError(f"{path}: missing image for {stem(image_name)!r}")
        return path

    def image_where(self, image_name: str) -> str:
        return str(self.root / "coco" / image_name)

    def image(self, name: str) -> np.ndarray:
        full = self._locate(name)[1]
        return sources.decode(self.image_file(full), self.image_where(full), "image", "RGB")

    def image_names(self) -> list[str]:
        """Every annotated image (both files, the training file where there is one), sorted."""
        splits = [s for s in ("val", "trn") if s == "val" or (self.root / SPLIT_FILES[s]
                                                              ).is_file()]
        return sorted({n for s in splits for images in self.annotations(s).values()
                       for n in images})

    def masks(self, name: str, class0: int) -> tuple[np.ndarray, np.ndarray]:
        split, full = self._locate(name)
        categories = self._all_categories()
        if not 0 <= class0 < len(categories):
            raise DataError(f"{self.root}: no LVIS-92i class {class0} ({len(categories)} "
                            f"eligible categories at {self.shots} shot(s))")
        category = categories[class0]
        entry = self._files[split].get(category, {}).get(full)
        file = self.root / SPLIT_FILES[split]
        if entry is None:
            raise DataError(f"{file}: category {category} (class {class0}) has no instance "
                            f"in {full!r}")
        width, height = sources.image_size(self.image_file(full))
        where = f"{file} ({full}, category {category})"
        mask = np.zeros((height, width), bool)
        for instance in entry["annotations"]:
            mask |= instance_mask(instance["segmentation"], height, width, where)
        return mask, np.zeros_like(mask)

    def present_classes(self, name: str) -> list[int]:
        split, full = self._locate(name)
        return [i for i, c in enumerate(self._all_categories())
                if full in self._files[split].get(c, {})]


# --- `vrp-sam prepare-lvis`: Matcher's files from the LVIS v1 annotations ------------------
def matcher_layout(lvis: dict, where: str) -> Annotations:
    """The LVIS v1 instances JSON -> {category id: {image name: {"annotations": [...]}}}:
    categories by ascending id, images in the order of their first instance of the category,
    instances in file order; an image's name is its COCO 2017 path (`val2017/<file>`, from
    its `coco_url`). The instances keep LVIS's fields (segmentation, bbox, area, id, ...)."""
    try:
        images = {image["id"]: "/".join(image["coco_url"].split("/")[-2:])
                  for image in lvis["images"]}
        out: Annotations = {c["id"]: {} for c in sorted(lvis["categories"],
                                                         key=lambda c: c["id"])}
        for ann in lvis["annotations"]:
            name = images[ann["image_id"]]
            out[ann["category_id"]].setdefault(name, {"annotations": []})["annotations"].append(
                ann)
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        raise DataError(f"{where}: not an LVIS v1 instances file ({type(e).__name__}: {e})"
                        ) from e
    return {c: v for c, v in out.items() if v}


def prepare_lvis(lvis_files: Iterable[tuple[str, str | Path]], output: str | Path) -> list[dict]:
    """(split, LVIS v1 JSON) pairs -> Matcher's `lvis_<split>.pkl` files under `output`
    (split: train or val); returns a summary per file."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    summaries = []
    for split, path in lvis_files:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such LVIS annotation file")
        try:
            lvis = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not JSON ({e})") from e
        layout = matcher_layout(lvis, str(path))
        target = output / f"lvis_{split}.pkl"
        write_bytes_atomic(target, pickle.dumps(layout, protocol=4))
        summaries.append({"split": split, "file": str(target), "categories": len(layout),
                          "images": len({n for v in layout.values() for n in v})})
    return summaries
