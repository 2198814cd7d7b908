"""PATNet's cross-domain benchmark (slei109/PATNet): Deepglobe, ISIC2018, the chest X-rays and
FSS-1000, written here in PATNet's layout; our episodes equal PATNet's samplers re-run on them
(the rules written out below from its files), the readers return PATNet's masks, and
`vrp-sam evaluate` measures a trained run on each."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vrp_sam_jax.cli import main
from vrp_sam_jax.data import isic_classes, protocols, splits
from vrp_sam_jax.data.roots import make_source
from vrp_sam_jax.errors import DataError

SHOTS = (1, 3)
NUM = 40


def _image(path: Path, rng: np.random.Generator, size=(20, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def _mask(path: Path, rng: np.random.Generator, size=(20, 24), channels: int = 1) -> np.ndarray:
    """A grey mask with values on both sides of PATNet's 128 threshold; returns the truth."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = rng.choice(np.array([0, 100, 127, 128, 200, 255], np.uint8), size)
    grey[0, 0] = 255  # never empty
    Image.fromarray(np.repeat(grey[..., None], 3, -1) if channels == 3 else grey).save(path)
    return grey >= 128


# Names that sort differently as file names than as stems ('a-b.jpg' < 'a.jpg', 'a' < 'a-b'),
# numbers that sort as strings, and files PATNet's `split('.')[1] == ext` filter leaves out.
TILES = ("10_00", "9_01", "a", "a-b", "207_55", "31_4")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("patnet")
    return root, write_patnet_datasets(root)


def write_patnet_datasets(root: Path, fss: bool = True) -> dict:
    """PATNet's four under `root` in its layouts (ISIC unsorted, as unpacked); returns the
    masks PATNet would read, by (benchmark, stem, class0)."""
    rng = np.random.default_rng(0)
    truth: dict = {}
    for c in range(1, 7):  # Deepglobe: tiles shared between class folders, a mask per class
        for stem in TILES[: 2 + c % 5]:
            _image(root / "Deepglobe" / str(c) / "test" / "origin" / f"{stem}.jpg",
                   np.random.default_rng(sum(map(ord, stem))))  # one tile, one image
            truth["deepglobe", stem, c - 1] = _mask(
                root / "Deepglobe" / str(c) / "test" / "groundtruth" / f"{stem}.png", rng,
                channels=3)
        (root / "Deepglobe" / str(c) / "test" / "origin" / "notes.txt").write_text("x")
        # glob skips names starting with a dot (a zip's `.jpg.jpg` or `._x.jpg` leftovers)
        (root / "Deepglobe" / str(c) / "test" / "origin" / ".jpg.jpg").write_text("x")
    classes = isic_classes.class_of_image()
    chosen = [i for c in (1, 2, 3) for i in sorted(k for k, v in classes.items() if v == c)[:4]]
    for image_id in chosen:  # ISIC: flat as unpacked; prepare-isic sorts them
        _image(root / "ISIC" / "ISIC2018_Task1-2_Training_Input" / f"{image_id}.jpg", rng)
        truth["isic", image_id, classes[image_id] - 1] = _mask(
            root / "ISIC" / "ISIC2018_Task1_Training_GroundTruth" /
            f"{image_id}_segmentation.png", rng)
    for stem in ("CHNCXR_0001_0", "CHNCXR_0010_1", "CHNCXR_0002_0", "CHNCXR_0003_1"):
        _image(root / "LungSegmentation" / "CXR_png" / f"{stem}.png", rng)
        truth["lung", stem, 0] = _mask(root / "LungSegmentation" / "masks" / f"{stem}_mask.png",
                                       rng)
    for category in splits.fss_categories()["test"] if fss else ():
        for n in range(1, 12 if category == "bus" else 11):  # 10 images (one has 11)
            _image(root / "FSS-1000" / category / f"{n}.jpg", rng, (8, 8))
            _mask(root / "FSS-1000" / category / f"{n}.png", rng, (8, 8))
    return truth


# --- PATNet's samplers, as its files write them ------------------------------------------
def _patnet_classwise(folders: list[str], extension: str) -> dict[int, list[str]]:
    """`build_img_metadata_classwise` (data/deepglobe.py l. 106-116, isic.py l. 104-114,
    lung.py l. 102-112): per category, `sorted(glob(folder/*))` kept where
    `basename.split('.')[1] == ext`."""
    return {i: [p for p in sorted(glob.glob(f"{folder}/*"))
                if os.path.basename(p).split(".")[1] == extension]
            for i, folder in enumerate(folders)}


def _patnet_sample(classwise: dict[int, list[str]], shots: int, num: int) -> list[tuple]:
    """`sample_episode` (data/deepglobe.py l. 86-97 and the same in isic.py, lung.py) for
    idx = 0 .. num-1 in order (test.py: `fix_randseed(0)`, 0 workers, no shuffling)."""
    np.random.seed(0)
    out = []
    for idx in range(num):
        class_id = idx % len(classwise)
        query_name = np.random.choice(classwise[class_id], 1, replace=False)[0]
        support_names = []
        while True:
            support_name = np.random.choice(classwise[class_id], 1, replace=False)[0]
            if query_name != support_name:
                support_names.append(support_name)
            if len(support_names) == shots:
                break
        out.append((query_name, support_names, class_id))
    return out


def _stem(path: str) -> str:
    return os.path.basename(path).split(".")[0]


def _lung_stem(mask_path: str) -> str:
    return os.path.basename(mask_path[:-9] + ".png").split(".")[0]  # lung.py l. 64-65


def _ours(benchmark: str, root: Path, shots: int, num: int) -> list[tuple]:
    source = make_source(benchmark, root)
    return [(e.query, list(e.supports), e.class0) for e in protocols.episodes(
        benchmark, 0, shots, "patnet", num, classwise=source.classwise())]


@pytest.mark.parametrize("shots", SHOTS)
def test_deepglobe_isic_lung_episodes_equal_patnets_samplers(datasets, shots, capsys):
    root, _ = datasets
    isic_classes.prepare_isic(root, progress=False)
    cases = {
        "deepglobe": ([f"{root}/Deepglobe/{c}/test/origin" for c in range(1, 7)], "jpg", _stem),
        "isic": ([f"{root}/ISIC/ISIC2018_Task1-2_Training_Input/{c}" for c in (1, 2, 3)], "jpg",
                 _stem),
        "lung": ([f"{root}/LungSegmentation/masks"], "png", _lung_stem),
    }
    for benchmark, (folders, extension, stem) in cases.items():
        theirs = [(stem(q), [stem(s) for s in ss], c) for q, ss, c in
                  _patnet_sample(_patnet_classwise(folders, extension), shots, NUM)]
        assert _ours(benchmark, root, shots, NUM) == theirs, benchmark
    # PATNet's default count, and `vrp-sam episodes` prints the same list
    assert len(protocols.episodes("lung", 0, 1, "patnet",
                                  classwise=make_source("lung", root).classwise())) == 600
    assert main(["episodes", "--benchmark", "deepglobe", "--data-root", str(root), "--shots",
                 str(shots), "--num", str(NUM), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(e["query"], e["supports"], e["class0"]) for e in printed] == _ours(
        "deepglobe", root, shots, NUM)


@pytest.mark.parametrize("shots", SHOTS)
def test_fss_episodes_equal_patnets_sampler(datasets, shots, capsys):
    """data/fss.py: categories sorted (l. 22-24), every listed image a query in order
    (l. 107-114, 81-96), supports `<n>.jpg` for n = np.random.choice(range(1, 11)), class
    760 + sorted index."""
    root, _ = datasets
    categories = sorted(splits.fss_categories()["test"])
    metadata = [p for cat in categories
                for p in sorted(glob.glob(f"{root}/FSS-1000/{cat}/*"))
                if os.path.basename(p).split(".")[1] == "jpg"]
    np.random.seed(0)
    theirs = []
    for query_name in metadata:
        class_sample = categories.index(query_name.split("/")[-2]) + 760
        support_names = []
        while True:
            support_name = np.random.choice(range(1, 11), 1, replace=False)[0]
            support_name = os.path.join(os.path.dirname(query_name), str(support_name)) + ".jpg"
            if query_name != support_name:
                support_names.append(support_name)
            if len(support_names) == shots:
                break
        theirs.append((query_name, support_names, class_sample))

    def named(path: str) -> str:
        return f"{path.split('/')[-2]}/{_stem(path)}"

    theirs = [(named(q), [named(s) for s in ss], c) for q, ss, c in theirs]
    assert len(theirs) == 2401  # 'bus' has an 11th image
    assert _ours("fss", root, shots, None) == theirs
    # without the dataset: the 10 standard images of each category
    default = protocols.episodes("fss", 0, shots, "patnet")
    assert len(default) == 2400 and [e.query for e in default[:3]] == [
        f"{categories[0]}/{n}" for n in (1, 10, 2)]
    assert main(["episodes", "--benchmark", "fss", "--protocol", "patnet", "--num", "3",
                 "--json"]) == 0
    assert [e["query"] for e in json.loads(capsys.readouterr().out)] == [
        e.query for e in default[:3]]


def test_readers_return_patnets_masks(datasets):
    root, truth = datasets
    isic_classes.prepare_isic(root, progress=False)
    for (benchmark, stem, class0), expected in truth.items():
        source = make_source(benchmark, root)
        foreground, ignore = source.masks(stem, class0)
        np.testing.assert_array_equal(foreground, expected, err_msg=f"{benchmark} {stem}")
        assert not ignore.any() and source.image(stem).shape == (*expected.shape, 3)
    deepglobe = make_source("deepglobe", root)
    assert deepglobe.present_classes("a") == [0, 1, 2, 3, 5]  # in folders 1-4 and 6
    assert splits.class_name("deepglobe", 4) == "water"
    assert splits.class_name("isic", 0) == "melanoma"
    fss = make_source("fss", root)
    np.testing.assert_array_equal(fss.image("bus/3"), fss.image("bus/3.jpg"))


def test_prepare_isic_sorts_by_patnets_class_file(tmp_path, capsys):
    classes = isic_classes.class_of_image()
    assert len(classes) == 2594 and sorted(set(classes.values())) == [1, 2, 3]
    # the file's first rows (PATNet's data/isic/class_id.csv): nevus, ..., melanoma
    assert classes["ISIC_0000000"] == 2 and classes["ISIC_0000004"] == 1
    images = tmp_path / "ISIC2018_Task1-2_Training_Input"
    images.mkdir()
    (images / "ISIC_0000000.jpg").write_bytes(b"jpeg bytes")
    assert main(["prepare-isic", "--isic-root", str(tmp_path), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["placed"] == 1 and summary["missing"] == 2593
    assert (images / "2" / "ISIC_0000000.jpg").read_bytes() == b"jpeg bytes"
    assert main(["prepare-isic", "--isic-root", str(tmp_path), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["already_placed"] == 1
    assert not [p for p in images.rglob("*") if "partial" in p.name]
    assert main(["prepare-isic", "--isic-root", str(tmp_path / "nothing"), "--quiet"]) == 2
    assert "ISIC2018_Task1-2_Training_Input: missing" in capsys.readouterr().err


def test_packed_form_reads_as_the_folders(datasets, tmp_path, capsys):
    """`vrp-sam pack` of Deepglobe, ISIC and the X-rays: the same lists, images and masks
    (a Deepglobe tile of several classes packed once per class, with each class's mask)."""
    root, truth = datasets
    isic_classes.prepare_isic(root, progress=False)
    for benchmark in ("deepglobe", "isic", "lung"):
        out = tmp_path / benchmark
        assert main(["pack", "--benchmark", benchmark, "--data-root", str(root), "--output",
                     str(out)]) == 0
        folder, packed = make_source(benchmark, root), make_source(benchmark, out)
        assert packed.classwise() == folder.classwise()
        for (name, stem, class0), expected in truth.items():
            if name == benchmark:
                np.testing.assert_array_equal(packed.masks(stem, class0)[0], expected)
                np.testing.assert_array_equal(packed.image(stem), folder.image(stem))
    capsys.readouterr()
    (root / "LungSegmentation" / "CXR_png" / "CHNCXR_0002_0.png").rename(tmp_path / "away.png")
    try:
        assert main(["pack", "--benchmark", "lung", "--data-root", str(root), "--output",
                     str(tmp_path / "incomplete")]) == 2
        assert "CHNCXR_0002_0.png: missing image of a listed lung image" in (
            capsys.readouterr().err)
    finally:
        (tmp_path / "away.png").rename(root / "LungSegmentation" / "CXR_png" /
                                       "CHNCXR_0002_0.png")


def test_bad_layouts_are_one_line(tmp_path, capsys):
    masks = tmp_path / "LungSegmentation" / "masks"
    masks.mkdir(parents=True)
    (tmp_path / "LungSegmentation" / "CXR_png").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(masks / "MCUCXR_0001_0.png")
    with pytest.raises(DataError, match="MCUCXR_0001_0.png: a mask's name must end in _mask"):
        make_source("lung", tmp_path).classwise()
    assert main(["episodes", "--benchmark", "isic", "--num", "2"]) == 2
    assert "give the dataset root" in capsys.readouterr().err
    assert main(["episodes", "--benchmark", "deepglobe", "--protocol", "hsnet"]) == 2
    assert "--protocol patnet" in capsys.readouterr().err
    assert main(["episodes", "--benchmark", "deepglobe", "--data-root", str(tmp_path)]) == 2
    assert "no Deepglobe (PATNet" in capsys.readouterr().err
    assert main(["episodes", "--benchmark", "toy", "--protocol", "patnet",
                 "--data-root", str(tmp_path)]) == 2
    assert "PATNet's protocol covers deepglobe, isic, lung, fss, not 'toy'" in (
        capsys.readouterr().err)


def test_evaluate_a_trained_run_on_each(toy_run, datasets, tmp_path, capsys):
    """A toy-trained run measured on PATNet's four (the PASCAL- or COCO-trained runs of the
    field in miniature): one report each, with PATNet's classes."""
    root, _ = datasets
    isic_classes.prepare_isic(root, progress=False)
    for benchmark, classes in (("deepglobe", 6), ("isic", 3), ("lung", 1), ("fss", 240)):
        out = tmp_path / benchmark
        assert main(["evaluate", "--checkpoint", str(toy_run), "--benchmark", benchmark,
                     "--protocol", "patnet", "--data-root", str(root), "--num-episodes", "8",
                     "--figures", "2", "--quiet", "--output-dir", str(out)]) == 0, benchmark
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert (line["benchmark"], line["protocol"], line["episodes"]) == (
            benchmark, "patnet", 8)
        report = json.loads((out / "fold0.json").read_text())
        assert len(report["class_iou"]) == classes and 0 <= report["miou"] <= 100
        assert (out / "episodes_fold0.png").is_file()
    assert main(["evaluate", "--checkpoint", str(toy_run), "--benchmark", "lung",
                 "--data-root", str(root), "--all-folds", "--quiet"]) == 2
    assert "lung has no folds" in capsys.readouterr().err
