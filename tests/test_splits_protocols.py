"""Fold classes, the shipped split lists and HSNet's episode protocol (docs/COMPUTATION.md §8-9)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from vrp_sam_jax.cli import main
from vrp_sam_jax.data import protocols, splits

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "splits"


def test_fold_classes():
    assert splits.test_classes("pascal", 0) == [0, 1, 2, 3, 4]
    assert splits.test_classes("pascal", 3) == [15, 16, 17, 18, 19]
    assert splits.test_classes("coco", 1) == list(range(1, 80, 4))
    for bench, n in (("pascal", 20), ("coco", 80)):
        for f in range(4):
            tested, trained = splits.test_classes(bench, f), splits.train_classes(bench, f)
            assert sorted(tested + trained) == list(range(n))
    with pytest.raises(ValueError, match="fold"):
        splits.test_classes("pascal", 4)


def test_shipped_lists_shape():
    val0 = splits.pascal_metadata("val", 0)
    assert len(val0) == 346 and val0[0] == ("2007_000033", 0)
    assert {c for _, c in val0} == set(range(5))
    trn0 = splits.pascal_metadata("trn", 0)
    assert {c for _, c in trn0} == set(range(5, 20))
    coco = splits.coco_classwise("val", 2)
    assert sorted(coco) == splits.test_classes("coco", 2)
    assert all(n.startswith("val2014/COCO_val2014_") for n in coco[2][:5])
    assert len(splits.fss_categories()["test"]) == 240


@pytest.mark.skipif(not SOURCE.is_dir(), reason="the field's split files are not beside the repo")
def test_shipped_lists_equal_source_files():
    lines = (SOURCE / "hsnet/pascal/val/fold1.txt").read_text().split()
    assert [f"{n}__{c + 1:02d}" for n, c in splits.pascal_metadata("val", 1)] == lines
    for split in ("val", "trn"):
        with open(SOURCE / f"hsnet/coco/{split}/fold3.pkl", "rb") as f:
            source = {int(k): v for k, v in pickle.load(f).items() if v}  # noqa: S301
        assert splits.coco_classwise(split, 3) == source


def test_hsnet_pascal_fold0_first_ten_by_hand():
    """HSNet: query i = line i of val/fold0.txt; supports drawn with numpy's legacy global RNG
    seeded 0, `np.random.choice(class_list, 1, replace=False)[0]`, redrawn if == query."""
    lines = [ln.split("__") for ln in splits._pascal()["val"]["0"]]
    by_class: dict[int, list[str]] = {}
    for name, cls in lines:
        by_class.setdefault(int(cls) - 1, []).append(name)
    np.random.seed(0)
    expected = []
    for i in range(10):
        name, cls = lines[i][0], int(lines[i][1]) - 1
        while True:
            support = np.random.choice(by_class[cls], 1, replace=False)[0]
            if support != name:
                break
        expected.append({"query": name, "supports": [str(support)], "class0": cls})
    got = [e.to_dict() for e in protocols.episodes("pascal", 0, 1, "hsnet", num=10)]
    assert got == expected
    # The first entries, written out: a fixed point for anyone auditing against HSNet's logs.
    assert [(e["query"], e["supports"][0], e["class0"]) for e in got[:3]] == [
        ("2007_000033", "2010_001174", 0), ("2007_000061", "2007_005705", 3),
        ("2007_000129", "2008_003108", 1)]


def test_hsnet_protocol_properties():
    eps = protocols.episodes("pascal", 2, 5)
    val = splits.pascal_metadata("val", 2)
    assert len(eps) == 1000
    assert all(e.query == val[i % len(val)][0] for i, e in enumerate(eps))
    assert all(len(e.supports) == 5 and e.query not in e.supports for e in eps)
    coco = protocols.episodes("coco", 0, 1, num=200)
    classwise = splits.coco_classwise("val", 0)
    assert all(e.class0 in splits.test_classes("coco", 0) for e in coco)
    assert all(e.query in classwise[e.class0] and e.supports[0] in classwise[e.class0]
               for e in coco[:50])
    assert protocols.episodes("coco", 0, 1, num=30) == coco[:30]  # reproducible
    fss = protocols.episodes("fss", 0, 1)
    assert len(fss) == 2400 and fss[0].class0 == 760


def test_episodes_cli_json(capsys):
    assert main(["episodes", "--benchmark", "pascal", "--fold", "0", "--shots", "1",
                 "--protocol", "hsnet", "--num", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0] == {"query": "2007_000033", "supports": ["2010_001174"], "class0": 0}
    assert len(out) == 4
    with pytest.raises(SystemExit) as exit_info:  # a usage error: one line, status 2
        main(["episodes", "--benchmark", "pascal", "--protocol", "pfenet"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert ("--protocol: invalid choice: 'pfenet' (choose from 'hsnet', 'vrp', 'patnet', "
            "'matcher')") in err
