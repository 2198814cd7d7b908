"""`vrp-sam demo`: VRP-SAM learns on the embedded toy benchmark, on a CPU, in minutes.

A tiny SAM and backbone with random weights (`configs/toy.py`) are trained on the toy
benchmark's base categories, then evaluated on its novel categories (fold 0) against the same
model before training. Writes the training run (checkpoints, TensorBoard events) and a figure
of reference / target / prediction / ground truth for a few episodes, and ends with one JSON
line: {"miou_trained", "miou_untrained", "episodes", "seconds", ...}.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vrp_sam_jax import model_io
from vrp_sam_jax.config import load_config, vrp_sam_config
from vrp_sam_jax.data import protocols, splits
from vrp_sam_jax.data.sources import ToySource
from vrp_sam_jax.evaluation.episodes import evaluate_params
from vrp_sam_jax.evaluation.figures import episode_rows, write_figure
from vrp_sam_jax.runtime.sharding import make_mesh
from vrp_sam_jax.training.run_dir import hold, initial_params, is_run_dir
from vrp_sam_jax.training.trainer import train

FIGURE_EPISODES = 6


def run(output_dir: str | Path, overrides: Sequence[str] = (), progress: bool = True) -> dict:
    start = time.perf_counter()
    output_dir = Path(output_dir)
    workdir = output_dir / "run"
    config = load_config("toy", overrides)
    if is_run_dir(workdir):  # the demo trains anew: its earlier run goes, said so
        with hold(workdir):  # never one that a training (or the app's toy setup) is using
            pass
        if progress:
            print(f"vrp-sam demo: replacing the earlier demo run in {workdir} (another "
                  "--output-dir keeps it)", file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)
    model_config = vrp_sam_config(config)
    mesh = make_mesh(config.mesh.data, config.mesh.model)
    source = ToySource()
    data = config.data
    # reported on the release's sampler (seed 321); training validates on HSNet's (seed 0)
    episodes = protocols.episodes("toy", data.fold, data.shots, "vrp", data.val_episodes)
    classes = splits.test_classes("toy", data.fold)

    def evaluate(params, desc, on_batch=None):
        return evaluate_params(model_config, params, source, episodes, classes, data.condition,
                               mesh, config.train.global_batch, progress=progress,
                               on_batch=on_batch, desc=desc)

    untrained = evaluate(initial_params(config, model_config, workdir, training=True)[0],
                         "1/3 untrained model_config on the novel categories (the baseline)")
    if progress:
        print("2/3 training on the base categories", file=sys.stderr)
    result = train(config, workdir, progress=progress)
    trained_model = model_io.load(workdir)  # the best checkpoint
    rows: list[np.ndarray] = []
    trained = evaluate(trained_model.params,
                       "3/3 trained model_config on the novel categories",
                       lambda b, logits: episode_rows(b, logits, rows, FIGURE_EPISODES,
                                                      lambda c: splits.class_name("toy", c)))
    figure = output_dir / "episodes.png"
    write_figure(rows, figure, data.condition)
    return {"miou_trained": round(trained.miou(), 2),
            "miou_untrained": round(untrained.miou(), 2),
            "fb_iou_trained": round(trained.fb_iou(), 2),
            "fb_iou_untrained": round(untrained.fb_iou(), 2),
            "episodes": trained.episodes, "novel_classes": classes,
            "train_steps": result["steps"], "best_step": trained_model.info["step"],
            "figure": str(figure), "workdir": str(workdir),
            "seconds": round(time.perf_counter() - start, 1)}


def main(output_dir: str, overrides: Sequence[str] = (), progress: bool = True) -> int:
    print(json.dumps(run(output_dir, overrides, progress)))
    return 0
