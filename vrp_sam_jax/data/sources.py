"""Dataset readers: image name (as in the split lists) -> RGB image and class masks.

Layouts accepted (the root may be the folder that holds them, or the dataset folder itself):
- PASCAL-5i: `VOC2012/JPEGImages/<name>.jpg`, `VOC2012/SegmentationClassAug/<name>.png`
  (value = 1-based VOC class, 255 = border, ignored).
- COCO-20i: `COCO2014/` (or the release's `MSCOCO14/`) with `train2014/`, `val2014/` images
  and per-image class masks `annotations/{train2014,val2014}/<stem>.png` (value = 1-based
  category index; `vrp-sam prepare-coco` builds them).
- FSS-1000: `FSS-1000/<category>/<n>.jpg` with the mask `<n>.png` (foreground >= 128); an
  image is named `category/n.jpg` (HSNet's lists) or by its stem `category/n` (PATNet's).
- PATNet's cross-domain datasets (slei109/PATNet `data/*.py`; images named by their stems,
  masks binarised at >= 128 as PATNet's `read_mask`, no ignore label):
  - Deepglobe (PATNet's preprocessed tiles): `Deepglobe/<c>/test/origin/<stem>.jpg` and
    `Deepglobe/<c>/test/groundtruth/<stem>.png` for the classes c = 1..6 (class0 = c - 1);
    one tile may be in several class folders, with each class's own mask.
  - ISIC2018 Task 1: `ISIC/ISIC2018_Task1-2_Training_Input/<c>/<stem>.jpg` (c = 1..3, sorted
    by `vrp-sam prepare-isic` from PATNet's `data/isic/class_id.csv`) and
    `ISIC/ISIC2018_Task1_Training_GroundTruth/<stem>_segmentation.png`.
  - Chest X-ray: `LungSegmentation/masks/<stem>_mask.png` and `LungSegmentation/CXR_png/
    <stem>.png` (PATNet takes the image's name from the mask's, less its last 9 characters).
- The toy benchmark: generated, no root.
- Any of these but the toy packed by `vrp-sam pack` (`data.packed`): the root is its output
  (`data.roots.make_source` opens either kind).
- LVIS-92i reads Matcher's annotation files: `data.lvis`.

A root may be a local path or a bucket URL (`gs://...`, `vrp_sam_jax.storage.paths`).

Every failure names the file and the problem.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
from etils import epath
from PIL import Image, UnidentifiedImageError

from vrp_sam_jax.data import splits, toy_benchmark
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


def patnet_files(folder: AnyPath, extension: str) -> list[str]:
    """The file names PATNet lists in `folder`: `sorted(glob(folder/*))` (which skips names
    starting with a dot) kept where `basename.split('.')[1] == extension` (its
    `build_img_metadata_classwise`; a name with no dot is skipped, where PATNet would stop).
    Sorted by whole file name, as PATNet sorts."""
    if not folder.is_dir():
        raise DataError(f"{folder}: missing folder")
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    return [n for n in names if len(n.split(".")) > 1 and n.split(".")[1] == extension]


def _stems(where: str, files: list[str], stem_of: Callable[[str], str]) -> dict[str, str]:
    """stem -> file name, in the files' order; two files with one stem are refused (PATNet
    tells them apart by path; an episode names the stem)."""
    stems: dict[str, str] = {}
    for file in files:
        stem = stem_of(file)
        if stem in stems:
            raise DataError(f"{where}: {file!r} has the same stem {stem!r} as {stems[stem]!r}")
        stems[stem] = file
    return stems


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

    @staticmethod
    def file_name(name: str) -> str:
        """`category/n.jpg` for either name of an image (`category/n.jpg` or `category/n`)."""
        return name if name.endswith(".jpg") else f"{name}.jpg"

    def image(self, name: str) -> np.ndarray:
        return _open(self.root / self.file_name(name), "image", name, "RGB")

    def _mask_file(self, name: str) -> np.ndarray:
        return _open(self._mask_path(name), "mask", name, "L")

    def _mask_path(self, name: str) -> AnyPath:
        return (self.root / self.file_name(name)).with_suffix(".png")

    def _mask_where(self, name: str) -> str:
        return str(self._mask_path(name))

    def _category_files(self, category: str) -> list[str]:
        return patnet_files(self.root / category, "jpg")

    def classwise(self, split: str = "test") -> dict[int, list[str]]:
        """PATNet's listing (data/fss.py): the split's categories sorted, class = offset +
        sorted index, each with the sorted `.jpg` files of its folder, as stems
        `category/n`."""
        return {splits.FSS_SPLIT_OFFSET[split] + i: [f"{cat}/{file.split('.')[0]}"
                                                     for file in self._category_files(cat)]
                for i, cat in enumerate(sorted(splits.fss_categories()[split]))}

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


class PatnetSource:
    """A PATNet cross-domain dataset: per class, the files PATNet lists, named by stem, one
    binary mask per (image, class). Subclasses read the files: from the dataset's folders
    (`PatnetFolderSource`) or from its packed form (`packed.PackedPatnetSource`)."""

    benchmark = ""
    classes = 0
    root: AnyPath

    @staticmethod
    def stem(file: str) -> str:
        """An episode's name for a listed file (PATNet's `name.split('.')[0]`)."""
        return file.split(".")[0]

    def listed_files(self, class0: int) -> list[str]:
        """The files PATNet lists for the class, in its order."""
        raise NotImplementedError

    def read_image(self, class0: int, file: str) -> np.ndarray:
        raise NotImplementedError

    def read_image_size(self, class0: int, file: str) -> tuple[int, int]:
        raise NotImplementedError

    def read_mask(self, class0: int, file: str) -> tuple[np.ndarray, str]:
        """The grey mask of the class's listed `file`, and where it is (for messages)."""
        raise NotImplementedError

    def _listing(self) -> dict[int, dict[str, str]]:
        """class0 -> {stem: listed file}, listed once (the dataset does not change in a run)."""
        if getattr(self, "_listed", None) is None:
            self._listed = {c: _stems(f"{self.root} (class {c + 1})", self.listed_files(c),
                                      self.stem) for c in range(self.classes)}
        return self._listed

    def classwise(self) -> dict[int, list[str]]:
        """class0 -> the stems PATNet's sampler draws from, in its order."""
        return {c: list(stems) for c, stems in self._listing().items()}

    def present_classes(self, name: str) -> list[int]:
        return [c for c, stems in self._listing().items() if name in stems]

    def _file(self, name: str, class0: int | None = None) -> tuple[int, str]:
        """(class0, listed file) of an image in `class0`, or in its first class."""
        listing = self._listing()
        classes = self.present_classes(name) if class0 is None else [class0]
        if not classes or name not in listing.get(classes[0], {}):
            which = "any class" if class0 is None else f"class {class0}"
            raise DataError(f"{self.root}: no {self.benchmark} image {name!r} in {which}")
        return classes[0], listing[classes[0]][name]

    def image(self, name: str) -> np.ndarray:
        return self.read_image(*self._file(name))

    def masks(self, name: str, class0: int) -> tuple[np.ndarray, np.ndarray]:
        """PATNet's `read_mask`: grey values >= 128 are the object; no ignore label."""
        grey, where = self.read_mask(*self._file(name, class0))
        mask = grey >= 128
        width, height = self.read_image_size(*self._file(name))
        if mask.shape != (height, width):
            raise DataError(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                            f"is {width}x{height}")
        return mask, np.zeros_like(mask)


class PatnetFolderSource(PatnetSource):
    """A PATNet dataset in its own folders: subclasses say where the files are."""

    EXTENSION = "jpg"  # of the files PATNet lists
    FOLDER = ""  # the dataset's folder in a data root (the root may also be that folder)
    MARKER = ""  # a folder inside it that shows it is there
    LAYOUT = ""  # the layout in words, for the message when it is not found

    def __init__(self, root: str | AnyPath):
        self.root = _find_root(root, (self.FOLDER,), self.MARKER, self.LAYOUT)

    def listed_folder(self, class0: int) -> AnyPath:
        raise NotImplementedError

    def image_file(self, class0: int, file: str) -> AnyPath:
        """Where a listed file's image is: the listed file itself, unless said otherwise."""
        return self.listed_folder(class0) / file

    def mask_file(self, class0: int, file: str) -> AnyPath:
        raise NotImplementedError

    def listed_files(self, class0: int) -> list[str]:
        return patnet_files(self.listed_folder(class0), self.EXTENSION)

    def read_image(self, class0: int, file: str) -> np.ndarray:
        return _open(self.image_file(class0, file), "image", file, "RGB")

    def read_image_size(self, class0: int, file: str) -> tuple[int, int]:
        path = self.image_file(class0, file)
        if not path.is_file():
            raise DataError(f"{path}: missing image for {self.stem(file)!r}")
        return image_size(path)

    def read_mask(self, class0: int, file: str) -> tuple[np.ndarray, str]:
        path = self.mask_file(class0, file)
        return _open(path, "mask", self.stem(file), "L"), str(path)

    def layout_files(self) -> list[tuple[str, AnyPath, AnyPath]]:
        """(`<class>/<listed file>`, image file, mask file) of every listed image: what
        `vrp-sam pack` stores (a tile in several classes once per class, with its mask)."""
        return [(f"{c + 1}/{file}", self.image_file(c, file), self.mask_file(c, file))
                for c in range(self.classes) for file in self.listed_files(c)]


class DeepglobeSource(PatnetFolderSource):
    """PATNet's preprocessed Deepglobe (data/deepglobe.py; the tiles of data/preprocess.py)."""

    benchmark = "deepglobe"
    classes = 6
    FOLDER, MARKER = "Deepglobe", "1"
    LAYOUT = "Deepglobe (PATNet's tiles: 1/ .. 6/ with test/origin, test/groundtruth)"

    def listed_folder(self, class0: int) -> AnyPath:
        return self.root / str(class0 + 1) / "test" / "origin"

    def mask_file(self, class0: int, file: str) -> AnyPath:
        return self.root / str(class0 + 1) / "test" / "groundtruth" / f"{self.stem(file)}.png"


class IsicSource(PatnetFolderSource):
    """ISIC2018 Task 1 as PATNet reads it (data/isic.py)."""

    benchmark = "isic"
    classes = 3
    FOLDER, MARKER = "ISIC", "ISIC2018_Task1-2_Training_Input"
    LAYOUT = ("ISIC2018 (ISIC2018_Task1-2_Training_Input/1..3, "
              "ISIC2018_Task1_Training_GroundTruth)")

    def listed_folder(self, class0: int) -> AnyPath:
        return self.root / "ISIC2018_Task1-2_Training_Input" / str(class0 + 1)

    def mask_file(self, class0: int, file: str) -> AnyPath:
        return (self.root / "ISIC2018_Task1_Training_GroundTruth" /
                f"{self.stem(file)}_segmentation.png")


class LungSource(PatnetFolderSource):
    """The Chest X-ray lung masks as PATNet reads them (data/lung.py): it lists the masks and
    takes each image's name from its mask's (`name[:-9] + '.png'`)."""

    benchmark = "lung"
    classes = 1
    EXTENSION = "png"
    MASK_SUFFIX = "_mask.png"
    FOLDER, MARKER = "LungSegmentation", "masks"
    LAYOUT = "Chest X-ray (LungSegmentation/masks, LungSegmentation/CXR_png)"

    @staticmethod
    def stem(file: str) -> str:
        return file[:-len(LungSource.MASK_SUFFIX)]

    def listed_folder(self, class0: int) -> AnyPath:
        return self.root / "masks"  # what PATNet lists

    def listed_files(self, class0: int) -> list[str]:
        files = super().listed_files(class0)
        for file in files:
            if not file.endswith(self.MASK_SUFFIX):
                # PATNet would read `CXR_png/<name[:-9]>.png`, a file that is not this
                # mask's image: refused here rather than read wrong
                raise DataError(f"{self.root / 'masks' / file}: a mask's name must end in "
                                f"{self.MASK_SUFFIX} (PATNet takes the image's name from it)")
        return files

    def image_file(self, class0: int, file: str) -> AnyPath:
        return self.root / "CXR_png" / f"{self.stem(file)}.png"

    def mask_file(self, class0: int, file: str) -> AnyPath:
        return self.root / "masks" / file


PATNET_SOURCES: dict[str, type[PatnetFolderSource]] = {
    "deepglobe": DeepglobeSource, "isic": IsicSource, "lung": LungSource}


def folder_source(benchmark: str, root: str | AnyPath | None = None) -> EpisodeSource:
    """The folder reader of `benchmark` ('pascal', 'coco', 'fss' need `root`; 'toy' needs
    none). `roots.make_source` is what runs use: it also opens packed roots."""
    if benchmark == "toy":
        return ToySource()
    readers = {"pascal": PascalSource, "coco": CocoSource, "fss": FssSource, **PATNET_SOURCES}
    if benchmark not in readers:
        raise ValueError(f"unknown benchmark {benchmark!r} ({', '.join([*readers, 'toy'])})")
    if root is None:
        raise DataError(f"benchmark {benchmark!r} needs its dataset root "
                        "(--config.data.root=DIR; `vrp-sam episodes`: --data-root DIR)")
    return readers[benchmark](root)
