"""Evaluation: the fold table, `vrp-sam evaluate` (one fold, all folds, original size),
cross-domain episodes, determinism across runs and device counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vrp_sam_jax.cli import main
from vrp_sam_jax.data import protocols, splits
from vrp_sam_jax.report import fold_table, table_markdown

REPO = Path(__file__).resolve().parents[1]


def test_fold_table_layout():
    results = {f: {"miou": 50.0 + f, "fb_iou": 70.04 + f} for f in range(4)}
    table = fold_table(results)
    assert list(table["miou"]) == ["F-0", "F-1", "F-2", "F-3", "Mean"]
    assert table["miou"]["Mean"] == 51.5 and table["fb_iou"]["F-3"] == 73.0
    md = table_markdown(table, "pascal, 1-shot").splitlines()
    assert md[2] == "| metric | F-0 | F-1 | F-2 | F-3 | Mean |"
    assert md[4] == "| mIoU | 50.0 | 51.0 | 52.0 | 53.0 | 51.5 |"


def test_cross_domain_episodes_use_unseen_classes_only():
    for fold in range(4):
        eps = protocols.episodes("coco2pascal", fold, 1, num=60)
        allowed = set(splits.COCO_TO_PASCAL_FOLDS[fold])
        assert {e.class0 for e in eps} <= allowed
        # none of the classes was a COCO training class of that fold
        coco_names = {splits.COCO_CLASSES[c] for c in splits.train_classes("coco", fold)}
        aliases = {"aeroplane": "airplane", "diningtable": "dining table",
                   "motorbike": "motorcycle", "pottedplant": "potted plant", "sofa": "couch",
                   "tvmonitor": "tv"}
        for c in allowed:
            name = splits.PASCAL_CLASSES[c]
            assert aliases.get(name, name) not in coco_names
    assert sorted(c for v in splits.COCO_TO_PASCAL_FOLDS.values() for c in v) == list(range(20))


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("run")
    assert main(["train", "--config", str(REPO / "configs/toy.py"), "--workdir", str(workdir),
                 "--quiet", "--config.model.image_size=64", "--config.train.epochs=1",
                 "--config.train.steps_per_epoch=4", "--config.data.val_episodes=8"]) == 0
    return workdir


def test_evaluate_one_fold_and_all_folds(trained_workdir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--config", str(REPO / "configs/toy.py"), "--checkpoint",
                 str(trained_workdir), "--num-episodes", "12", "--output-dir", str(out),
                 "--figures", "3", "--quiet", "--condition", "box"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["episodes"] == 12 and line["condition"] == "box"
    saved = json.loads((out / "fold0.json").read_text())
    assert saved["miou"] == line["miou"] and set(saved["class_iou"]) == {"0", "1"}
    assert (out / "episodes_fold0.png").is_file() and "| mIoU |" in (out / "fold0.md").read_text()
    # the same checkpoint again: identical numbers
    assert main(["evaluate", "--config", str(REPO / "configs/toy.py"), "--checkpoint",
                 str(trained_workdir), "--num-episodes", "12", "--output-dir", str(out),
                 "--figures", "0", "--quiet", "--condition", "box"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again == line
    assert main(["evaluate", "--config", str(REPO / "configs/toy.py"), "--checkpoint",
                 str(trained_workdir), "--num-episodes", "8", "--output-dir", str(out),
                 "--figures", "0", "--quiet", "--all-folds", "--shots", "2"]) == 0
    table = json.loads((out / "all_folds.json").read_text())["table"]
    assert list(table["miou"]) == ["F-0", "F-1", "F-2", "F-3", "Mean"]
    assert "| mIoU |" in capsys.readouterr().out


def test_evaluate_original_size_and_errors(trained_workdir, tmp_path, capsys):
    args = ["evaluate", "--config", str(REPO / "configs/toy.py"), "--checkpoint",
            str(trained_workdir), "--num-episodes", "8", "--output-dir", str(tmp_path),
            "--figures", "0", "--quiet"]
    assert main([*args, "--original-size"]) == 0
    original = json.loads((tmp_path / "fold0.json").read_text())
    assert original["original_size"] is True and original["episodes"] == 8
    assert main(["evaluate", "--config", str(REPO / "configs/pascal.py"), "--checkpoint",
                 str(tmp_path / "none.pt"), "--quiet"]) == 2
    assert "init.sam_checkpoint" in capsys.readouterr().err
    assert main([*args, "--all-folds", "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "{fold}" in capsys.readouterr().err


DETERMINISM = r"""
import json, jax, numpy as np
from vrp_sam_jax.data import protocols, splits
from vrp_sam_jax.data.sources import ToySource
from vrp_sam_jax.evaluation import evaluate_params
from vrp_sam_jax.models import init_params
from vrp_sam_jax.training import config as C
from vrp_sam_jax.training.mesh import make_mesh

config = C.toy_config()
config.model.image_size = 64
model = C.model_config(config)
params = init_params(model, 4)
episodes = protocols.episodes("toy", 1, 2, "vrp", 21)
out = {}
for name, devices, batch in (("one", jax.devices()[:1], 8), ("eight", jax.devices(), 8),
                             ("eight_again", jax.devices(), 16)):
    meter = evaluate_params(model, params, ToySource(), episodes, splits.test_classes("toy", 1),
                            "scribble", make_mesh(devices=devices), batch, progress=False)
    out[name] = meter.areas.tolist()
print(json.dumps(out))
"""


def test_evaluation_identical_on_1_and_8_devices_and_batch_sizes():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", DETERMINISM], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert np.asarray(out["one"]).sum() > 0
    assert out["one"] == out["eight"] == out["eight_again"]
