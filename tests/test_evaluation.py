"""Evaluation: the fold table, `vrp-sam evaluate` (one fold, all folds, original size),
cross-domain episodes, determinism across runs and device counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vrp_sam_jax import model_io
from vrp_sam_jax.cli import main
from vrp_sam_jax.data import protocols, splits
from vrp_sam_jax.data.sources import ToySource
from vrp_sam_jax.evaluation.episodes import evaluate_params
from vrp_sam_jax.evaluation.metric import IoUMeter, episode_areas
from vrp_sam_jax.evaluation.report import fold_table, table_markdown
from vrp_sam_jax.runtime.sharding import make_mesh
from vrp_sam_jax.transforms.preprocess import logits_to_size

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


def test_evaluate_one_fold_and_all_folds(toy_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--config", str(REPO / "configs/toy.py"), "--checkpoint",
                 str(toy_run), "--num-episodes", "12", "--output-dir", str(out),
                 "--figures", "3", "--quiet", "--condition", "box"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["episodes"] == 12 and line["condition"] == "box"
    assert line["report"] == str(out / "fold0.md")  # the last line says where it went
    saved = json.loads((out / "fold0.json").read_text())
    assert saved["miou"] == line["miou"] and set(saved["class_iou"]) == {"0", "1"}
    assert (out / "episodes_fold0.png").is_file() and "| mIoU |" in (out / "fold0.md").read_text()
    # the same checkpoint again: identical numbers
    assert main(["evaluate", "--config", str(REPO / "configs/toy.py"), "--checkpoint",
                 str(toy_run), "--num-episodes", "12", "--output-dir", str(out),
                 "--figures", "0", "--quiet", "--condition", "box"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again == line
    assert main(["evaluate", "--config", str(REPO / "configs/toy.py"), "--checkpoint",
                 str(toy_run), "--num-episodes", "8", "--output-dir", str(out),
                 "--figures", "0", "--quiet", "--all-folds", "--shots", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.strip().splitlines()[-1] == f"report: {out / 'all_folds.md'}"
    table = json.loads((out / "all_folds.json").read_text())["table"]
    assert list(table["miou"]) == ["F-0", "F-1", "F-2", "F-3", "Mean"]
    assert "| mIoU |" in printed


def test_evaluate_original_size_and_errors(toy_run, tmp_path, capsys):
    args = ["evaluate", "--config", str(REPO / "configs/toy.py"), "--checkpoint",
            str(toy_run), "--num-episodes", "8", "--output-dir", str(tmp_path),
            "--figures", "0", "--quiet"]
    assert main([*args, "--original-size"]) == 0
    original = json.loads((tmp_path / "fold0.json").read_text())
    assert original["original_size"] is True and original["episodes"] == 8
    # the same numbers computed here: the model's 64x64 logits resized to the toy images'
    # 128x128 (bilinear, align_corners=True: PyTorch's, checked) against the original masks
    model = model_io.load(toy_run)
    episodes = protocols.episodes("toy", 0, 1, "hsnet", 8)
    classes = splits.test_classes("toy", 0)
    rows: list = []
    evaluate_params(model.config, model.params, ToySource(), episodes, classes, "mask",
                    make_mesh(), 8, progress=False,
                    on_batch=lambda b, logits: rows.extend(zip(b["index"][b["valid"]],
                                                               logits[b["valid"]], strict=True)))
    meter = IoUMeter(classes)
    for index, logits in rows:
        episode = episodes[int(index)]
        truth, ignore = ToySource().masks(episode.query, episode.class0)
        full = logits_to_size(logits, *truth.shape)
        reference = F.interpolate(torch.from_numpy(logits)[None, None], truth.shape,
                                  mode="bilinear", align_corners=True)[0, 0].numpy()
        assert truth.shape == (128, 128) and np.abs(full - reference).max() < 1e-5
        meter.update(episode_areas(full[None] >= 0, truth[None], ignore[None]),
                     [episode.class0])
    assert meter.episodes == 8 and meter.miou() == original["miou"]
    assert {str(c): v for c, v in meter.class_iou().items()} == original["class_iou"]
    (tmp_path / "none.pt").write_bytes(b"")
    assert main(["evaluate", "--config", str(REPO / "configs/pascal.py"), "--checkpoint",
                 str(tmp_path / "none.pt"), "--benchmark", "toy", "--quiet"]) == 2
    assert "init.sam_checkpoint" in capsys.readouterr().err
    assert main([*args, "--all-folds", "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "{fold}" in capsys.readouterr().err




def test_evaluation_identical_on_1_and_8_devices_and_batch_sizes():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    script = REPO / "tests" / "scripts" / "evaluation_determinism.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert np.asarray(out["one"]).sum() > 0
    assert out["one"] == out["eight"] == out["eight_again"]
