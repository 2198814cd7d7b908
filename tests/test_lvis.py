"""LVIS-92i as Matcher defines it: `vrp-sam prepare-lvis` writes Matcher's annotation files
from an LVIS v1 JSON written here, our episodes equal Matcher's sampler re-run on them (its
rules written out below from aim-uofa/Matcher `matcher/data/lvis.py`), the reader's masks are
the union of the class's instances, and `vrp-sam evaluate` measures a trained run on a fold."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from vrp_sam_jax.cli import main
from vrp_sam_jax.data import lvis, protocols
from vrp_sam_jax.data.roots import make_source
from vrp_sam_jax.errors import DataError

HEIGHT, WIDTH = 24, 32


def _segmentation(rng: np.random.Generator, kind: int):
    """Polygons, a compressed RLE or an uncompressed one, as LVIS and Matcher's files hold."""
    y0, x0 = rng.integers(0, HEIGHT - 8), rng.integers(0, WIDTH - 8)
    if kind == 0:
        return [[float(x0), float(y0), x0 + 7.5, y0 + 1.0, x0 + 3.0, y0 + 7.0],
                [float(x0), y0 + 6.0, x0 + 2.0, y0 + 7.0, float(x0), y0 + 7.5]]
    box = np.zeros((HEIGHT, WIDTH), np.uint8, order="F")
    box[y0:y0 + rng.integers(2, 8), x0:x0 + rng.integers(2, 8)] = 1
    rle = mask_util.encode(box)
    if kind == 1:
        return {"size": rle["size"], "counts": rle["counts"].decode()}
    flat = box.ravel(order="F")  # uncompressed: run lengths, starting with zeros
    changes = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]])) if flat.size else []
    return {"size": [HEIGHT, WIDTH], "counts": np.diff(np.r_[0, changes]).tolist()}


def _lvis_json(rng: np.random.Generator, split: str, images: int, categories: int) -> dict:
    names = [f"{split}2017/{i:012d}.jpg" for i in range(1 + 1000 * (split == "val"),
                                                        images + 1 + 1000 * (split == "val"))]
    out = {"images": [{"id": i, "coco_url": f"http://images.cocodataset.org/{n}",
                       "height": HEIGHT, "width": WIDTH} for i, n in enumerate(names)],
           "categories": [{"id": c, "name": f"thing{c}"} for c in range(categories, 0, -1)],
           "annotations": []}
    for c in range(1, categories + 1):
        # some not eligible: in the validation file only, so that training has categories
        # the validation file does not list as eligible
        count = 1 if c % 9 == 0 and split == "val" else int(rng.integers(2, 6))
        for image in rng.choice(len(names), count, replace=False).tolist():
            for _ in range(int(rng.integers(1, 3))):
                out["annotations"].append({
                    "id": len(out["annotations"]) + 1, "image_id": image, "category_id": c,
                    "segmentation": _segmentation(rng, len(out["annotations"]) % 3)})
    rng.shuffle(out["annotations"])  # file order is not category order
    return out, names


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_lvis_dataset(tmp_path_factory.mktemp("lvis"))


def write_lvis_dataset(root: Path) -> Path:
    """LVIS v1 JSON files, the COCO images they name under `LVIS/coco/`, and Matcher's files
    made from them by `vrp-sam prepare-lvis`."""
    rng = np.random.default_rng(0)
    for split, images, categories in (("train", 12, 30), ("val", 16, 34)):
        data, names = _lvis_json(rng, split, images, categories)
        (root / f"lvis_v1_{split}.json").write_text(json.dumps(data))
        for name in names:
            path = root / "LVIS" / "coco" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(path)
    assert main(["prepare-lvis", "--train-json", str(root / "lvis_v1_train.json"),
                 "--val-json", str(root / "lvis_v1_val.json"), "--output",
                 str(root / "LVIS")]) == 0
    return root


def _matcher_episodes(root: Path, fold: int, shot: int, num: int) -> list[tuple]:
    """matcher/data/lvis.py, as it runs under main_oss.py (`fix_randseed(0)`, 0 workers, in
    order): `build_img_metadata_classwise` (l. 64-86) and `__getitem__` / `load_frame`
    (l. 35-36, 136-161), the draws only."""
    with open(root / "LVIS" / "lvis_val.pkl", "rb") as f:
        val_anno = pickle.load(f)
    val_cat_ids = [i for i in list(val_anno.keys()) if len(val_anno[i]) > shot]
    nclass_val_spilt = len(val_cat_ids) // 10
    class_ids_ori = [val_cat_ids[fold + 10 * v] for v in range(nclass_val_spilt)]
    class_ids = sorted(range(len(class_ids_ori)))
    np.random.seed(0)
    out = []
    for idx in range(num):
        idx %= len(class_ids)
        class_sample = class_ids_ori[idx]
        query_name = np.random.choice(list(val_anno[class_sample].keys()), 1, replace=False)[0]
        support_names = []
        while True:
            support_name = np.random.choice(list(val_anno[class_sample].keys()), 1,
                                            replace=False)[0]
            if query_name != support_name:
                support_names.append(support_name)
            if len(support_names) == shot:
                break
        out.append((query_name, support_names, val_cat_ids.index(class_sample)))
    return out


@pytest.mark.parametrize(("fold", "shots"), [(0, 1), (3, 2), (9, 1)])
def test_episodes_equal_matchers_sampler(dataset, fold, shots, capsys):
    source = make_source("lvis", dataset, shots)
    ours = protocols.episodes("lvis", fold, shots, "matcher", 50, classwise=source.classwise())
    theirs = _matcher_episodes(dataset, fold, shots, 50)
    assert [(e.query, list(e.supports), e.class0) for e in ours] == [
        (lvis.stem(q), [lvis.stem(s) for s in ss], c) for q, ss, c in theirs]
    assert {e.class0 for e in ours} == set(range(fold, len(source.categories), 10)) - set(
        range(10 * (len(source.categories) // 10), len(source.categories)))
    assert main(["episodes", "--benchmark", "lvis", "--fold", str(fold), "--shots",
                 str(shots), "--data-root", str(dataset), "--num", "50", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [e.to_dict() for e in ours]
    assert len(protocols.episodes("lvis", fold, shots, "matcher",
                                  classwise=source.classwise())) == 2300


def test_prepare_lvis_writes_matchers_layout_and_masks_are_unions(dataset):
    lvis_json = json.loads((dataset / "lvis_v1_val.json").read_text())
    with open(dataset / "LVIS" / "lvis_val.pkl", "rb") as f:
        layout = pickle.load(f)
    assert list(layout) == sorted(layout)  # categories by id
    names = {i["id"]: "/".join(i["coco_url"].split("/")[-2:]) for i in lvis_json["images"]}
    for ann in lvis_json["annotations"]:
        assert ann in layout[ann["category_id"]][names[ann["image_id"]]]["annotations"]
    source = make_source("lvis", dataset)
    checked = 0
    for class0, category in enumerate(source.categories):
        for name, entry in layout[category].items():
            expected = np.zeros((HEIGHT, WIDTH), bool)
            for ann in entry["annotations"]:  # Matcher's get_mask, each instance, then union
                segm = ann["segmentation"]
                if isinstance(segm, list):
                    rle = mask_util.merge(mask_util.frPyObjects(segm, HEIGHT, WIDTH))
                elif isinstance(segm["counts"], list):
                    rle = mask_util.frPyObjects(segm, HEIGHT, WIDTH)
                else:
                    rle = segm
                expected |= mask_util.decode(rle).astype(bool)
            foreground, ignore = source.masks(lvis.stem(name), class0)
            np.testing.assert_array_equal(foreground, expected)
            assert not ignore.any() and expected.any()
            assert class0 in source.present_classes(lvis.stem(name))
            checked += 1
    assert checked > 40


def test_packed_form_reads_as_the_files(dataset, tmp_path):
    """`vrp-sam pack --benchmark lvis`: the images as records, Matcher's files beside; the
    same lists, images and masks (training's too)."""
    out = tmp_path / "packed"
    assert main(["pack", "--benchmark", "lvis", "--data-root", str(dataset), "--output",
                 str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.pkl")) == ["lvis_train.pkl", "lvis_val.pkl"]
    for shots in (1, 2):
        folder, packed = make_source("lvis", dataset, shots), make_source("lvis", out, shots)
        assert type(packed).__name__ == "PackedLvisSource"
        assert packed.classwise() == folder.classwise()
        assert packed.training_classwise(4) == folder.training_classwise(4)
    for class0, stems in [*folder.classwise().items(), *folder.training_classwise(4).items()]:
        for name in stems:
            np.testing.assert_array_equal(packed.masks(name, class0)[0],
                                          folder.masks(name, class0)[0])
            np.testing.assert_array_equal(packed.image(name), folder.image(name))


def test_annotation_files_are_checked(tmp_path, dataset):
    root = tmp_path / "LVIS"
    root.mkdir()
    (root / "lvis_val.pkl").write_bytes(pickle.dumps({1: {"val2017/a.jpg": {
        "annotations": [{"segmentation": np.ones((2, 3), np.uint8)}]}}}))
    source = make_source("lvis", tmp_path)
    assert source.classwise() == {}  # one image: not eligible
    (root / "lvis_val.pkl").write_bytes(pickle.dumps({1: {"a": {"annotations": []}},
                                                      2: {"b": Path("x")}}))
    with pytest.raises(DataError, match="pathlib.*refusing to execute"):
        make_source("lvis", tmp_path).classwise()
    (root / "lvis_val.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="lvis_val.pkl: unreadable pickle"):
        make_source("lvis", tmp_path).classwise()
    with pytest.raises(DataError, match="no LVIS-92i found"):
        make_source("lvis", tmp_path / "nothing")
    (tmp_path / "bad.json").write_text(json.dumps({"images": [{"id": 1}]}))
    assert main(["prepare-lvis", "--val-json", str(tmp_path / "bad.json"), "--output",
                 str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out" / "lvis_val.pkl").exists()


def test_evaluate_a_trained_run_on_a_fold(toy_run, dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(toy_run), "--benchmark", "lvis", "--fold",
                 "2", "--data-root", str(dataset), "--num-episodes", "8", "--figures", "2",
                 "--quiet", "--output-dir", str(out)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (line["benchmark"], line["protocol"], line["fold"], line["episodes"]) == (
        "lvis", "matcher", 2, 8)
    report = json.loads((out / "fold2.json").read_text())
    categories = make_source("lvis", dataset).categories
    assert sorted(map(int, report["class_iou"])) == list(range(2, len(categories) // 10 * 10,
                                                               10))
    # the ten folds and their table
    assert main(["evaluate", "--checkpoint", str(toy_run), "--benchmark", "lvis", "--all-folds",
                 "--data-root", str(dataset), "--num-episodes", "8", "--figures", "0",
                 "--quiet", "--output-dir", str(out)]) == 0
    table = json.loads((out / "all_folds.json").read_text())["table"]
    assert list(table["miou"]) == [*(f"F-{f}" for f in range(10)), "Mean"]
    assert table["miou"]["F-2"] == round(report["miou"], 1)


def test_configs_lvis_trains_on_a_fold(dataset, tmp_path, capsys):
    """`configs/lvis.py` for two epochs of a step, tiny and random: Matcher's training categories
    (the fold's test categories held out), the embedding cache over their images, validation
    with Matcher's sampler."""
    workdir = tmp_path / "run"
    assert main(["train", "--config", "lvis:resnet_tiny,mask", "--workdir", str(workdir),
                 "--quiet", "--config.model.sam_type=tiny", "--config.init.random=True",
                 "--config.model.image_size=64", "--config.model.num_queries=16",
                 f"--config.data.root={dataset}", "--config.data.fold=7",
                 "--config.train.epochs=2", "--config.train.steps_per_epoch=1",
                 "--config.data.val_episodes=4"]) == 0
    source = make_source("lvis", dataset)
    lists = protocols.training_lists(source, "lvis", 7)
    tested = set(lvis.fold_classes(len(source.categories), 7))
    assert lists and not tested & set(lists)
    # training categories beyond the validation file's eligible ones get numbers after them
    assert max(lists) >= len(source.categories)
    for class0, stems in list(lists.items())[:6]:
        assert source.masks(stems[0], class0)[0].any()
    episodes = protocols.training_episodes("lvis", 7, 1, 0, 321, classwise=lists)
    assert {e.class0 for e in episodes} <= set(lists)
    # the embedding cache holds the training images and the validation queries, by stem
    validation = protocols.episodes("lvis", 7, 1, "matcher", 4, classwise=source.classwise())
    (part,) = (dataset / "vrp_sam_embedding_cache").rglob("part-*.json")
    assert set(json.loads(part.read_text())["names"]) == set(
        protocols.training_images("lvis", 7, lists)) | {e.query for e in validation}
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 2
