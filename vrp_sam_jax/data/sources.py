"""Dataset readers: image name (as in the split lists) -> RGB image and class masks.

Layouts accepted (the root may be the folder that holds them, or the dataset folder itself):
- PASCAL-5i: `VOC2012/JPEGImages/<name>.jpg`, `VOC2012/SegmentationClassAug/<name>.png`
  (value = 1-based VOC class, 255 = border, ignored).
- COCO-20i: `COCO2014/` (or the release's `MSCOCO14/`) with `train2014/`, `val2014/` images
  and per-image class masks `annotations/{train2014,val2014}/<stem>.png` (value = 1-based
  category index; `vrp-sam prepare-coco` builds them).
- FSS-1000: `FSS-1000/<category>/<n>.jpg` with the mask `<n>.png` (foreground >= 128).
- The toy benchmark: generated, no root.
- Any of the first three packed by `vrp-sam pack` (`data.packed`): the root is its output
  (`data.roots.make_source` opens either kind).

A root may be a local path or a bucket URL (`gs://...`, `vrp_sam_jax.storage.paths`).

Every failure names the file and the problem.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
from etils import epath
from PIL import Image, UnidentifiedImageError

from vrp_sam_jax.data import toy_benchmark
from vrp_sam_jax.errors import DataError
from vrp_sam_jax.storage.paths import AnyPath, as_path

IGNORE_LABEL = 255


class EpisodeSource(Protocol):
    benchmark: str

    def image(self, name: str) -> np.ndarray:
        """HxWx3 uint8."""

    def masks(self, name: str, class0: int) -> tuple[np.ndarray, np.ndarray]:
        """(foreground of class `class0`, ignore) as HxW bool, the size of `image(name)`."""

    def present_classes(self, name: str) -> list[int]:
        """0-based classes in the image's mask (any pixel count)."""


def decode(file: AnyPath | BinaryIO, where: str, what: str, mode: str | None) -> np.ndarray:
    """An image file (a path, or its bytes in a file object) -> array, converted to `mode`;
    the folder and the packed readers both decode with this, so they agree bit for bit."""
    try:
        with _opened(file) as f, Image.open(f) as img:
            if mode is not None:
                img = img.convert(mode)
            return np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{where}: unreadable {what} ({e})") from e


def _opened(file: AnyPath | BinaryIO) -> BinaryIO:
    """A path opened for reading (local or on a bucket), or the file object itself."""
    return file.open("rb") if isinstance(file, Path | epath.Path) else contextlib.nullcontext(
        file)


def _open(path: AnyPath, what: str, name: str, mode: str | None) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: missing {what} for split entry {name!r}")
    return decode(path, str(path), what, mode)


def image_size(file: AnyPath | BinaryIO) -> tuple[int, int]:
    """(width, height) from the file's header."""
    with _opened(file) as f, Image.open(f) as img:
        return img.size


def _find_root(root: str | AnyPath, candidates: tuple[str, ...], marker: str, what: str
               ) -> AnyPath:
    root = as_path(root)
    for sub in (*candidates, ""):
        if (root / sub / marker).is_dir():
            return root / sub
    tried = ", ".join(str(root / c / marker) for c in (*candidates, ""))
    raise DataError(f"{root}: no {what} found (looked for {tried})")


class LabelMapSource:
    """Images with one label map each (value k+1 = class k)."""

    benchmark = ""

    def image_path(self, name: str) -> AnyPath:
        raise NotImplementedError

    def label_path(self, name: str) -> AnyPath:
        raise NotImplementedError

    def image(self, name: str) -> np.ndarray:
        return _open(self.image_path(name), "image", name, "RGB")

    def _label_file(self, name: str) -> np.ndarray:
        return _open(self.label_path(name), "mask", name, None)

    def _image_size(self, name: str) -> tuple[int, int]:
        return image_size(self.image_path(name))

    def _where(self, name: str, what: str) -> str:
        """Where an image's file is, for messages."""
        return str(self.label_path(name) if what == "mask" else self.image_path(name))

    def label(self, name: str) -> np.ndarray:
        label = self._label_file(name)
        if label.ndim != 2:
            raise DataError(f"{self._where(name, 'mask')}: a class mask must be single-channel "
                            f"(palette or grey), got shape {label.shape}")
        return label

    def _checked_label(self, name: str) -> np.ndarray:
        label = self.label(name)
        width, height = self._image_size(name)
        if label.shape != (height, width):
            raise DataError(f"{self._where(name, 'mask')}: mask is {label.shape[1]}x"
                            f"{label.shape[0]} but its image {self._where(name, 'image')} is "
                            f"{width}x{height}")
        return label

    def masks(self, name: str, class0: int) -> tuple[np.ndarray, np.ndarray]:
        label = self._checked_label(name)
        foreground = label == class0 + 1
        if not foreground.any():
            raise DataError(f"{self._where(name, 'mask')}: class {class0} (value "
                            f"{class0 + 1}) is absent from the mask of {name!r}")
        return foreground, label == IGNORE_LABEL

    def present_classes(self, name: str) -> list[int]:
        values = np.unique(self.label(name))
        return [int(v) - 1 for v in values if 0 < v < IGNORE_LABEL]


class PascalSource(LabelMapSource):
    benchmark = "pascal"

    def __init__(self, root: str | AnyPath):
        self.root = _find_root(root, ("VOC2012", "VOCdevkit/VOC2012"), "JPEGImages",
                               "PASCAL VOC2012 (JPEGImages + SegmentationClassAug)")
        if not (self.root / "SegmentationClassAug").is_dir():
            raise DataError(f"{self.root / 'SegmentationClassAug'}: missing (the SBD-augmented "
                            "masks PASCAL-5i uses; SegmentationClass alone is not enough)")

    def image_path(self, name: str) -> AnyPath:
        return self.root / "JPEGImages" / f"{name}.jpg"

    def label_path(self, name: str) -> AnyPath:
        return self.root / "SegmentationClassAug" / f"{name}.png"


class CocoSource(LabelMapSource):
    benchmark = "coco"

    def __init__(self, root: str | AnyPath):
        self.root = _find_root(root, ("COCO2014", "MSCOCO14"), "annotations",
                               "COCO 2014 (train2014/, val2014/, annotations/)")

    def image_path(self, name: str) -> AnyPath:
        return self.root / name

    def label_path(self, name: str) -> AnyPath:
        folder, _, file = name.partition("/")
        return self.root / "annotations" / folder / (Path(file).stem + ".png")


class FssSource:
    benchmark = "fss"

    def __init__(self, root: str | AnyPath):
        root = as_path(root)
        self.root = root / "FSS-1000" if (root / "FSS-1000").is_dir() else root
        if not self.root.is_dir():
            raise DataError(f"{root}: no FSS-1000 folder found")

    def image(self, name: str) -> np.ndarray:
        return _open(self.root / name, "image", name, "RGB")

    def _mask_file(self, name: str) -> np.ndarray:
        return _open((self.root / name).with_suffix(".png"), "mask", name, "L")

    def _mask_where(self, name: str) -> str:
        return str((self.root / name).with_suffix(".png"))

    def masks(self, name: str, class0: int) -> tuple[np.ndarray, np.ndarray]:
        mask = self._mask_file(name) >= 128
        image_shape = self.image(name).shape[:2]
        if mask.shape != image_shape:
            raise DataError(f"{self._mask_where(name)}: mask is {mask.shape[1]}x{mask.shape[0]}"
                            f" but its image is {image_shape[1]}x{image_shape[0]}")
        if not mask.any():
            raise DataError(f"{self._mask_where(name)}: empty foreground mask for {name!r}")
        return mask, np.zeros_like(mask)

    def present_classes(self, name: str) -> list[int]:
        raise DataError("FSS-1000 images hold one category each; classes come from the split")


class ToySource:
    """The embedded toy benchmark (`vrp_sam_jax.data.toy_benchmark`)."""

    benchmark = "toy"

    def image(self, name: str) -> np.ndarray:
        return toy_benchmark.render(name)[0]

    def masks(self, name: str, class0: int) -> tuple[np.ndarray, np.ndarray]:
        label = toy_benchmark.render(name)[1]
        foreground = label == class0 + 1
        if not foreground.any():
            raise DataError(f"toy image {name!r}: category {class0} is not in it")
        return foreground, np.zeros_like(foreground)

    def present_classes(self, name: str) -> list[int]:
        return list(toy_benchmark.present_classes(name))


def folder_source(benchmark: str, root: str | AnyPath | None = None) -> EpisodeSource:
    """The folder reader of `benchmark` ('pascal', 'coco', 'fss' need `root`; 'toy' needs
    none). `roots.make_source` is what runs use: it also opens packed roots."""
    if benchmark == "toy":
        return ToySource()
    readers = {"pascal": PascalSource, "coco": CocoSource, "fss": FssSource}
    if benchmark not in readers:
        raise ValueError(f"unknown benchmark {benchmark!r} ({', '.join([*readers, 'toy'])})")
    if root is None:
        raise DataError(f"benchmark {benchmark!r} needs its dataset root "
                        "(--config.data.root=DIR; `vrp-sam episodes`: --data-root DIR)")
    return readers[benchmark](root)
