"""Few-shot data: the `vrp` protocol, training streams, dataset readers and their errors,
COCO mask building, the toy benchmark and the batched, host-sharded pipeline."""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vrp_sam_jax.cli import main
from vrp_sam_jax.data import coco_masks, protocols, splits
from vrp_sam_jax.data import toy_benchmark as toy
from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions, load_episode
from vrp_sam_jax.data.roots import make_source
from vrp_sam_jax.data.sources import DataError, PascalSource, ToySource

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "splits" / "pfenet_pascal"


# --- the release's (`vrp`) protocol ----------------------------------------------------------
def test_vrp_pascal_fold0_first_ten_by_hand():
    """The release's PASCAL sampler, written out: Python's `random` and numpy's legacy RNG
    both seeded 321; query i = line i of data_list_0; class = its listed test classes
    (ascending) at `random.randint(1, n) - 1`; supports by `np.random.choice`."""
    images, classwise = splits.pfenet_pascal("val", 0)
    listed = {}
    for cls, names in classwise.items():
        for name in names:
            listed.setdefault(name, set()).add(cls)
    random.seed(321)
    np.random.seed(321)
    expected = []
    for i in range(10):
        query = images[i]
        classes = sorted(listed[query])
        cls = classes[random.randint(1, len(classes)) - 1]
        while True:
            support = np.random.choice(classwise[cls], 1, replace=False)[0]
            if support != query:
                break
        expected.append({"query": query, "supports": [str(support)], "class0": cls})
    got = [e.to_dict() for e in protocols.episodes("pascal", 0, 1, "vrp", num=10)]
    assert got == expected
    assert [(e["query"], e["supports"][0], e["class0"]) for e in got[:3]] == [
        ("2007_000033", "2009_002320", 0), ("2007_000061", "2007_004241", 3),
        ("2007_000129", "2009_001663", 1)]


@pytest.mark.skipif(not SOURCE.is_dir(), reason="the field's split files are not beside the repo")
def test_shipped_pfenet_lists_equal_source_files():
    for split, name in (("val", "val"), ("trn", "train")):
        images, classwise = splits.pfenet_pascal(split, 2)
        lines = (SOURCE / "fss_list" / name / "data_list_2.txt").read_text().split("\n")[:-1]
        assert images == [ln.split(" ")[0].split("/")[-1].split(".")[0] for ln in lines]
        source = ast.literal_eval((SOURCE / "fss_list" / name / "sub_class_file_list_2.txt")
                                  .read_text())
        assert classwise == {k - 1: [p[0].split("/")[-1].split(".")[0] for p in v]
                             for k, v in source.items()}


def test_vrp_present_classes_from_the_masks_change_the_draw():
    """With the dataset at hand, the classes come from the mask (as in the release)."""
    listed = protocols.episodes("pascal", 1, 1, "vrp", num=40)
    same = protocols.episodes("pascal", 1, 1, "vrp", num=40,
                              present=protocols._listed_classes(
                                  splits.pfenet_pascal("val", 1)[1]))
    assert listed == same
    everything = protocols.episodes("pascal", 1, 1, "vrp", num=40,
                                    present=lambda name: list(range(20)))
    assert [e.query for e in everything] == [e.query for e in listed]
    assert {e.class0 for e in everything} <= set(splits.test_classes("pascal", 1))
    assert [e.class0 for e in everything] != [e.class0 for e in listed]


def test_vrp_coco_and_errors():
    eps = protocols.episodes("coco", 3, 2, "vrp", num=50)
    classwise = splits.coco_classwise("val", 3)
    assert all(e.class0 in splits.test_classes("coco", 3) for e in eps)
    assert all(e.query in classwise[e.class0] and e.query not in e.supports for e in eps)
    assert eps != protocols.episodes("coco", 3, 2, "hsnet", num=50)
    with pytest.raises(ValueError, match="no FSS-1000 sampler"):
        protocols.episodes("fss", 0, 1, "vrp")
    with pytest.raises(ValueError, match=">= 1"):
        protocols.episodes("pascal", 0, 1, num=0)


def test_training_episodes_stream():
    a = protocols.training_episodes("pascal", 0, 2, epoch=0, seed=321)
    assert a == protocols.training_episodes("pascal", 0, 2, epoch=0, seed=321)
    b = protocols.training_episodes("pascal", 0, 2, epoch=1, seed=321)
    assert a != b and sorted(e.query for e in a) == sorted(e.query for e in b)
    images, classwise = splits.pfenet_pascal("trn", 0)
    assert len(a) == len(images)
    base = set(splits.train_classes("pascal", 0))
    assert all(e.class0 in base and e.query not in e.supports for e in a)
    assert all(set(e.supports) <= set(classwise[e.class0]) for e in a[:100])
    t = protocols.training_episodes("toy", 1, 1, epoch=0, seed=0)
    assert {e.class0 for e in t} == set(splits.train_classes("toy", 1))
    with pytest.raises(ValueError, match="unknown benchmark .fss. for folds"):
        protocols.training_episodes("fss", 0, 1, 0, 0)


# --- the toy benchmark -----------------------------------------------------------------------
def test_toy_images_are_pure_and_labelled():
    image, label = toy.render("val/000003")
    again = toy.render("val/000003")
    assert image.dtype == np.uint8 and image.shape == (toy.IMAGE_SIZE, toy.IMAGE_SIZE, 3)
    assert np.array_equal(image, again[0]) and np.array_equal(label, again[1])
    present = toy.present_classes("val/000003")
    assert sorted(set(np.unique(label).tolist()) - {0}) == [c + 1 for c in present]
    assert 2 <= len(present) <= 3
    assert not np.array_equal(image, toy.render("val/000004")[0])
    with pytest.raises(ValueError, match="not a toy image name"):
        toy.render("val/999999")
    # attributes are shared: no novel category differs from every base one in one attribute
    for fold in range(4):
        for novel in splits.test_classes("toy", fold):
            n = toy.CATEGORIES[novel]
            base = [toy.CATEGORIES[c] for c in splits.train_classes("toy", fold)]
            assert any(b.shape == n.shape for b in base)
            assert any(b.colour == n.colour for b in base)


def test_toy_episode_batches_shapes_dtypes():
    eps = protocols.episodes("toy", 0, 2, num=6)
    assert all(e.class0 in (0, 1) for e in eps)
    options = EpisodeOptions(image_size=64, condition="scribble")
    loader = EpisodeLoader(ToySource(), eps, 4, options, process_index=0, process_count=1,
                           workers=2)
    batches = list(loader)
    assert len(batches) == 2
    first, last = batches
    assert first["query_image"].shape == (4, 64, 64, 3) and first["query_image"].dtype == np.uint8
    assert first["support_images"].shape == (4, 2, 64, 64, 3)
    assert first["support_masks"].shape == (4, 2, 64, 64)
    assert first["support_masks"].dtype == np.float32
    assert first["query_mask"].dtype == np.uint8 and first["query_mask"].shape == (4, 64, 64)
    assert first["class0"].dtype == np.int32 and first["query_size"].tolist()[0] == [128, 128]
    assert last["valid"].tolist() == [True, True, False, False]
    assert last["index"].tolist()[:2] == [4, 5]
    assert all(b["query_mask"][b["valid"]].reshape(int(b["valid"].sum()), -1).max(1).all()
               for b in batches)
    # scribbles lie inside the support's object
    for b in batches:
        for i in range(4):
            for k in range(2):
                truth = toy.render(eps[int(b["index"][i])].supports[k])[1] == b["class0"][i] + 1
                from vrp_sam_jax.transforms.preprocess import resize_mask_nearest

                inside = resize_mask_nearest(truth, 64)
                assert b["support_masks"][i, k].sum() > 0
                assert not (b["support_masks"][i, k] > 0)[~inside].any()


def test_pipeline_is_independent_of_batching_workers_and_hosts():
    eps = protocols.training_episodes("toy", 0, 1, epoch=0, seed=5)[:8]
    options = EpisodeOptions(image_size=32, condition="point", training=True, seed=(5, 0))

    def rows(batch_size, workers, count=1, index=0):
        loader = EpisodeLoader(ToySource(), eps, batch_size, options, drop_remainder=True,
                               process_index=index, process_count=count, workers=workers)
        return [b for b in loader]

    one = np.concatenate([b["support_masks"] for b in rows(1, 1)])
    four = np.concatenate([b["support_masks"] for b in rows(4, 3)])
    assert np.array_equal(one, four)
    host0, host1 = rows(4, 2, 2, 0), rows(4, 2, 2, 1)
    assert [b["index"].tolist() for b in host0] == [[0, 1], [4, 5]]
    assert [b["index"].tolist() for b in host1] == [[2, 3], [6, 7]]
    merged = np.concatenate([np.concatenate([a["support_masks"], b["support_masks"]])
                             for a, b in zip(host0, host1, strict=True)])
    assert np.array_equal(merged, four)
    resumed = EpisodeLoader(ToySource(), eps, 4, options, process_index=0, process_count=1,
                            workers=1).batches(start=1)
    assert np.array_equal(next(resumed)["support_masks"], four[4:])
    with pytest.raises(ValueError, match="multiple of the process count"):
        EpisodeLoader(ToySource(), eps, 3, options, process_index=0, process_count=2)


# --- dataset readers on a PASCAL layout the test writes ----------------------------------
def _write_pascal(root: Path, names: dict[str, np.ndarray]) -> Path:
    voc = root / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClassAug").mkdir()
    rng = np.random.default_rng(0)
    for name, label in names.items():
        h, w = label.shape
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{name}.jpg")
        Image.fromarray(label, mode="L").save(voc / "SegmentationClassAug" / f"{name}.png")
    return voc


def test_pascal_reader_episode_and_ignore(tmp_path):
    label = np.zeros((60, 90), np.uint8)
    label[10:40, 20:70] = 3
    label[10:40, 19] = 255
    label[50:55, 0:5] = 7
    _write_pascal(tmp_path, {"a": label, "b": label[::-1].copy()})
    source = make_source("pascal", tmp_path)
    assert source.present_classes("a") == [2, 6]
    fg, ignore = source.masks("a", 2)
    assert fg.sum() == 30 * 50 and ignore.sum() == 30
    ep = protocols.Episode("a", ("b",), 2)
    out = load_episode(source, ep, 0, EpisodeOptions(image_size=45, condition="box"))
    from vrp_sam_jax.transforms.preprocess import resize_mask_nearest

    assert np.array_equal(out["query_mask"], resize_mask_nearest(label == 3, 45))
    assert np.array_equal(out["query_ignore"], resize_mask_nearest(label == 255, 45))
    assert out["query_size"].tolist() == [60, 90]
    box = out["support_masks"][0]
    truth = resize_mask_nearest(label[::-1] == 3, 45)
    ys, xs = np.nonzero(box)
    ty, tx = np.nonzero(truth)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (ty.min(), ty.max(), tx.min(), tx.max())


def test_reader_errors_name_the_file(tmp_path):
    label = np.zeros((20, 30), np.uint8)
    label[2:8, 2:8] = 1
    voc = _write_pascal(tmp_path, {"a": label, "wrong": label[:10]})
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(voc / "JPEGImages" / "wrong.jpg")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(voc / "JPEGImages" / "sizes.jpg")
    Image.fromarray(label[:10], mode="L").save(voc / "SegmentationClassAug" / "sizes.png")
    (voc / "JPEGImages" / "bad.jpg").write_bytes(b"not a jpeg")
    source = PascalSource(tmp_path)
    with pytest.raises(DataError, match=r"missing.jpg: missing image for split entry"):
        source.image("missing")
    with pytest.raises(DataError, match=r"sizes.png: mask is 30x10 but its image .* is 30x20"):
        source.masks("sizes", 0)
    with pytest.raises(DataError, match=r"a.png: class 4 \(value 5\) is absent"):
        source.masks("a", 4)
    with pytest.raises(DataError, match=r"bad.jpg: unreadable image"):
        source.image("bad")
    with pytest.raises(DataError, match="no PASCAL VOC2012"):
        PascalSource(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="needs its dataset root"):
        make_source("coco")


# --- COCO masks from a small COCO-format file ----------------------------------------------
def _coco_json(path: Path) -> None:
    square = [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0, 2.0, 12.0]]
    wide = [[0.0, 8.0, 20.0, 8.0, 20.0, 14.0, 0.0, 14.0]]
    data = {
        "images": [{"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "height": 16,
                    "width": 24},
                   {"id": 3, "file_name": "COCO_val2014_000000000003.jpg", "height": 10,
                    "width": 10}],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"},
                       {"id": 5, "name": "airplane"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "segmentation": square, "iscrowd": 0,
             "area": 100.0, "bbox": [2, 2, 10, 10]},
            {"id": 2, "image_id": 7, "category_id": 90, "segmentation": wide, "iscrowd": 0,
             "area": 120.0, "bbox": [0, 8, 20, 6]},
            {"id": 3, "image_id": 7, "category_id": 5, "iscrowd": 1, "area": 16.0,
             "bbox": [18, 0, 4, 4],
             "segmentation": {"counts": [0, 16], "size": [16, 24]}},
            {"id": 4, "image_id": 3, "category_id": 5, "segmentation": [[1.0, 1.0, 5.0, 1.0,
                                                                         5.0, 5.0, 1.0, 5.0]],
             "iscrowd": 0, "area": 16.0, "bbox": [1, 1, 4, 4]},
        ]}
    path.write_text(json.dumps(data))


def test_coco_masks_values_order_crowd_resume_verify(tmp_path):
    ann = tmp_path / "annotations"
    ann.mkdir()
    _coco_json(ann / "instances_val2014.json")
    assert main(["prepare-coco", "--coco-root", str(tmp_path), "--splits", "val2014",
                 "--quiet"]) == 0
    out = ann / "val2014"
    m7 = np.asarray(Image.open(out / "COCO_val2014_000000000007.png"))
    m3 = np.asarray(Image.open(out / "COCO_val2014_000000000003.png"))
    assert m7.shape == (16, 24) and m3.shape == (10, 10)
    # ascending ids 1, 5, 90 -> values 1, 2, 3; the later annotation (90) overwrites person
    assert set(np.unique(m7).tolist()) == {0, 1, 3}
    assert m7[5, 5] == 1 and m7[10, 5] == 3 and m7[0, 0] == 0
    assert m7[:16, 0].max() == 3  # crowd airplane (RLE, first column) left out
    assert set(np.unique(m3).tolist()) == {0, 2}
    # resume: a missing file is rebuilt, complete ones skipped
    (out / "COCO_val2014_000000000003.png").unlink()
    summary = coco_masks.prepare_coco(tmp_path, ["val2014"], progress=False)[0]
    assert (summary["written"], summary["skipped"], summary["images"]) == (1, 1, 2)
    assert np.array_equal(np.asarray(Image.open(out / "COCO_val2014_000000000003.png")), m3)
    # verification catches a wrong file
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(
        out / "COCO_val2014_000000000003.png")
    with pytest.raises(DataError, match="000003.png: differs from the mask rebuilt"):
        coco_masks.prepare_coco(tmp_path, ["val2014"], progress=False)
    (out / "COCO_val2014_000000000007.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="000007.png: unreadable mask"):
        coco_masks.prepare_coco(tmp_path, ["val2014"], progress=False)
    # the masks read back through the COCO reader, with 0-based classes
    (tmp_path / "val2014").mkdir()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(
        tmp_path / "val2014" / "COCO_val2014_000000000003.jpg")
    (out / "COCO_val2014_000000000003.png").unlink()
    source = make_source("coco", tmp_path)
    with pytest.raises(DataError, match="missing mask"):
        source.masks("val2014/COCO_val2014_000000000003.jpg", 1)


def test_episodes_cli_vrp_and_toy(capsys):
    assert main(["episodes", "--benchmark", "toy", "--protocol", "vrp", "--num", "5",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 5 and all(e["class0"] in (0, 1) for e in out)
    assert main(["episodes", "--benchmark", "pascal", "--protocol", "vrp", "--num", "2",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["supports"] == ["2009_002320"]


def test_fss_reader_and_episode(tmp_path):
    root = tmp_path / "FSS-1000" / "ab_wheel"
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in (1, 2):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(root / f"{i}.jpg")
        mask = np.zeros((24, 32, 3), np.uint8)
        mask[4:12, 5:20] = 255
        Image.fromarray(mask).save(root / f"{i}.png")
    source = make_source("fss", tmp_path)
    fg, ignore = source.masks("ab_wheel/1.jpg", 760)
    assert fg.sum() == 8 * 15 and not ignore.any()
    out = load_episode(source, protocols.Episode("ab_wheel/1.jpg", ("ab_wheel/2.jpg",), 760), 0,
                       EpisodeOptions(image_size=16))
    assert out["query_mask"].sum() > 0 and out["support_masks"].shape == (1, 16, 16)
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(root / "2.png")
    with pytest.raises(DataError, match="2.png: empty foreground mask"):
        source.masks("ab_wheel/2.jpg", 760)
