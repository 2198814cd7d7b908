"""Build the split files shipped in `vrp_sam_jax/data/split_files/` from the field's standard
files (HSNet's PASCAL/COCO/FSS-1000 splits, PFENet's PASCAL-5i lists as the VRP-SAM release
uses them), so evaluation works offline.

    python tools/build_split_files.py --source SPLITS   # holds hsnet/ and pfenet_pascal/

PASCAL and FSS lists are stored as JSON lines in their original order. HSNet's COCO pickles
(class -> image names) become one compressed npz of int32 image ids per (split, fold, class),
in the original list order, which the episode sampler depends on; every name is checked to be
`{split}2014/COCO_{split}2014_{id:012d}.jpg` so the names are rebuilt exactly.
PFENet's PASCAL lists (`fss_list/{train,val}/data_list_F.txt`, `sub_class_file_list_F.txt`)
keep only the image stems the release reads from them (`path.split('/')[-1].split('.')[0]`),
in file order.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import pickle
import re
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "vrp_sam_jax" / "data" / "split_files"
_COCO_NAME = re.compile(r"(train|val)2014/COCO_(train|val)2014_(\d{12})\.jpg")


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().split("\n") if line]


def build(source: Path, out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pascal = {split: {str(f): _lines(source / "hsnet" / "pascal" / split / f"fold{f}.txt")
                      for f in range(4)} for split in ("trn", "val")}
    fss = {split: _lines(source / "hsnet" / "fss" / f"{split}.txt")
           for split in ("trn", "val", "test")}
    _write_json_gz(out / "hsnet_pascal.json.gz", pascal)
    (out / "hsnet_fss.json").write_text(json.dumps(fss))
    arrays = {}
    for split, folder in (("trn", "train2014"), ("val", "val2014")):
        for fold in range(4):
            with open(source / "hsnet" / "coco" / split / f"fold{fold}.pkl", "rb") as f:
                classwise = pickle.load(f)  # noqa: S301  (the field's own split file)
            for cls, names in classwise.items():
                ids = []
                for name in names:
                    m = _COCO_NAME.fullmatch(name)
                    if m is None or m.group(1) != folder[:-4] or m.group(2) != folder[:-4]:
                        raise ValueError(f"unexpected COCO name {name!r} in {split} fold {fold}")
                    ids.append(int(m.group(3)))
                arrays[f"{split}/fold{fold}/class{int(cls)}"] = np.asarray(ids, np.int32)
    np.savez_compressed(out / "hsnet_coco.npz", **arrays)
    _write_json_gz(out / "pfenet_pascal.json.gz",
                   pfenet_pascal(source / "pfenet_pascal" / "fss_list"))


def _write_json_gz(path: Path, obj: object) -> None:
    """gzip with a zero timestamp, so rebuilding gives byte-identical files."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                 mtime=0) as f:
        f.write(json.dumps(obj).encode())


def _stem(path: str) -> str:
    return path.split("/")[-1].split(".")[0]


def pfenet_pascal(lists: Path) -> dict:
    """{split: {fold: {"images": [stem, ...], "classes": {1-based class: [stem, ...]}}}}."""
    out: dict = {}
    for split in ("train", "val"):
        out[split] = {}
        for fold in range(4):
            images = [_stem(line.split(" ")[0])
                      for line in _lines(lists / split / f"data_list_{fold}.txt")]
            classwise = ast.literal_eval((lists / split / f"sub_class_file_list_{fold}.txt")
                                         .read_text())
            out[split][str(fold)] = {
                "images": images,
                "classes": {str(c): [_stem(pair[0]) for pair in pairs]
                            for c, pairs in sorted(classwise.items())}}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, required=True,
                        help="folder with hsnet/ (HSNet's data/splits) and pfenet_pascal/")
    build(parser.parse_args().source)
