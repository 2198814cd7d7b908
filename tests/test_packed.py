"""Packed datasets (`vrp-sam pack`): PASCAL-, COCO- and FSS-like folder layouts the tests
write, packed into ArrayRecord shards, give the folder's episodes bit for bit; errors name the
packed root and the image."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vrp_sam_jax.cli import main
from vrp_sam_jax.data import packed
from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions
from vrp_sam_jax.data.protocols import Episode
from vrp_sam_jax.data.roots import make_source
from vrp_sam_jax.errors import DataError, InputError


def _image(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _label(rng: np.random.Generator, h: int, w: int, classes: list[int]) -> np.ndarray:
    label = np.zeros((h, w), np.uint8)
    for k, c in enumerate(classes):
        y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        label[y : y + h // 2, x : x + w // 2 - k] = c + 1
    label[0, :] = 255  # a border, ignored
    return label


def _pascal(root: Path) -> list[Episode]:
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClassAug").mkdir()
    rng = np.random.default_rng(0)
    names = [f"2008_00000{i}" for i in range(6)]
    for i, name in enumerate(names):
        h, w = 40 + 7 * i, 64 - 3 * i
        _image(rng, h, w).save(voc / "JPEGImages" / f"{name}.jpg", quality=90)
        Image.fromarray(_label(rng, h, w, [2, 5] if i % 2 else [2]), mode="L").save(
            voc / "SegmentationClassAug" / f"{name}.png")
    _image(rng, 10, 10).save(voc / "JPEGImages" / "no_mask.jpg")  # not packed: no mask
    return [Episode(names[i], (names[(i + 1) % 6], names[(i + 2) % 6]), 2) for i in range(6)]


def _coco(root: Path) -> list[Episode]:
    base = root / "COCO2014"
    rng = np.random.default_rng(1)
    names = []
    for folder, ids in (("train2014", (9, 25, 30)), ("val2014", (42, 73))):
        (base / folder).mkdir(parents=True)
        (base / "annotations" / folder).mkdir(parents=True)
        for i in ids:
            stem = f"COCO_{folder}_{i:012d}"
            h, w = 30 + i % 17, 50 + i % 11
            _image(rng, h, w).save(base / folder / f"{stem}.jpg")
            Image.fromarray(_label(rng, h, w, [7, 40]), mode="L").save(
                base / "annotations" / folder / f"{stem}.png")
            names.append(f"{folder}/{stem}.jpg")
    return [Episode(names[i], (names[(i + 3) % 5],), 40) for i in range(5)]


def _fss(root: Path) -> list[Episode]:
    rng = np.random.default_rng(2)
    names = []
    for category in ("ab_wheel", "abacus"):
        folder = root / "FSS-1000" / category
        folder.mkdir(parents=True)
        for i in (1, 2, 3):
            _image(rng, 32, 32).save(folder / f"{i}.jpg")
            mask = np.zeros((32, 32), np.uint8)
            mask[4 + i : 20, 3 : 18 + i] = 255
            Image.fromarray(mask).save(folder / f"{i}.png")
            names.append(f"{category}/{i}.jpg")
    return [Episode(names[i], (names[i - 1 if i % 3 else i + 1],), 760) for i in range(6)]


def _batches(source, episodes: list[Episode], condition: str, training: bool) -> list[dict]:
    options = EpisodeOptions(48, condition, training=training, seed=(5, 1))
    return list(EpisodeLoader(source, episodes, 4, options, process_index=0, process_count=1,
                              workers=2))


@pytest.mark.parametrize("benchmark, write", [("pascal", _pascal), ("coco", _coco),
                                              ("fss", _fss)])
def test_packed_episodes_equal_the_folders(benchmark, write, tmp_path, capsys):
    episodes = write(tmp_path / "folder")
    out = tmp_path / "packed"
    assert main(["pack", "--benchmark", benchmark, "--data-root", str(tmp_path / "folder"),
                 "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    images = {n for e in episodes for n in (e.query, *e.supports)}
    assert summary["images"] == len(images)  # the image without a mask is left out
    folder, packed_source = make_source(benchmark, tmp_path / "folder"), make_source(benchmark,
                                                                                      out)
    assert type(packed_source).__name__.startswith("Packed")
    assert "tensorflow" not in sys.modules  # read without TensorFlow
    for name in sorted(images):
        assert np.array_equal(folder.image(name), packed_source.image(name))
        if benchmark != "fss":
            assert folder.present_classes(name) == packed_source.present_classes(name)
    for condition, training in (("mask", False), ("box", True), ("scribble", True),
                                ("point", False)):
        a = _batches(folder, episodes, condition, training)
        b = _batches(packed_source, episodes, condition, training)
        assert len(a) == len(b) == 2
        for x, y in zip(a, b, strict=True):
            assert x.keys() == y.keys()
            for key in x:
                assert np.array_equal(x[key], y[key]), (condition, key)


def test_packed_errors_name_the_root_and_the_image(tmp_path):
    episodes = _pascal(tmp_path / "folder")
    out = tmp_path / "packed"
    packed.pack("pascal", tmp_path / "folder", out)
    source = make_source("pascal", out)
    with pytest.raises(DataError, match=r"packed.*'no_mask' is not in this packed pascal"):
        source.image("no_mask")
    with pytest.raises(DataError, match=r"packed \(mask of '2008_000000'\): class 4 \(value 5\) "
                                        r"is absent"):
        source.masks(episodes[0].query, 4)
    with pytest.raises(DataError, match="a packed pascal dataset, but the run reads coco"):
        make_source("coco", out)
    with pytest.raises(InputError, match="already holds a packed dataset"):
        packed.pack("pascal", tmp_path / "folder", out)
    (tmp_path / "empty_fss" / "FSS-1000").mkdir(parents=True)
    with pytest.raises(DataError, match="no image with its mask found"):
        packed.pack("fss", tmp_path / "empty_fss", tmp_path / "nothing")
    assert not (tmp_path / "nothing" / packed.INDEX).exists()
    # an unreadable image is packed as it is and refused when read, like the folder's
    (tmp_path / "folder" / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2008_000003.jpg"
     ).write_bytes(b"not a jpeg")
    packed.pack("pascal", tmp_path / "folder", tmp_path / "packed2")
    with pytest.raises(DataError, match=r"packed2 \(image of '2008_000003'\): unreadable image"):
        make_source("pascal", tmp_path / "packed2").image("2008_000003")
    # a shard cut short after packing (a copy that stopped): the records in it are refused
    shard = max((p for p in out.rglob("*array_record*") if p.is_file()),
                key=lambda p: p.stat().st_size)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])
    with pytest.raises(DataError, match=r"packed: .*(cannot be read, a shard is damaged|"
                                        r"unreadable packed records)"):
        cut = make_source("pascal", out)
        for episode in episodes:
            cut.image(episode.query)
    (out / packed.INDEX).write_text("{}")
    with pytest.raises(DataError, match="not a vrp-sam-packed-v1 index"):
        make_source("pascal", out)
