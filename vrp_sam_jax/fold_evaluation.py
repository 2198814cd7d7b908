"""`vrp-sam evaluate`: a checkpoint on a benchmark fold's episodes, or on all four folds.

Checkpoints: our training work directories (`vrp-sam train --workdir`; the best checkpoint,
with the config it was trained with), the release's `best_model.pt` or a `vrp-sam
convert-vrp` directory (then SAM comes from `init.sam_checkpoint`). For `--all-folds`, a
`{fold}` in the checkpoint path is replaced by the fold number.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import ml_collections
import numpy as np

import sam_port
from vrp_sam_jax.checkpoints import load_vrp
from vrp_sam_jax.data import protocols, splits
from vrp_sam_jax.data.sources import make_source
from vrp_sam_jax.evaluation import evaluate_params
from vrp_sam_jax.image_io import InputError
from vrp_sam_jax.inference import logits_to_size
from vrp_sam_jax.metrics import episode_areas
from vrp_sam_jax.models import VRPSamConfig
from vrp_sam_jax.report import (
    episode_rows,
    fold_table,
    table_markdown,
    write_figure,
    write_results,
)
from vrp_sam_jax.training.config import model_config
from vrp_sam_jax.training.mesh import make_mesh
from vrp_sam_jax.training.restore import restore_trained


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    benchmark: str  # pascal, coco, fss, toy, or coco2pascal (cross-domain)
    shots: int = 1
    protocol: str = "hsnet"
    condition: str = "mask"
    num_episodes: int | None = None
    original_size: bool = False
    figures: int = 8


def load_checkpoint(config: ml_collections.ConfigDict, checkpoint: str | Path
                    ) -> tuple[VRPSamConfig, dict, dict]:
    """-> (model config, params, info); the compute dtype and attention path are the
    evaluation config's (`model.compute_dtype`, `model.attention`), whatever trained it."""
    model, params, info = _load_checkpoint(config, Path(checkpoint))
    compute = model_config(config)
    return (dataclasses.replace(model, compute_dtype=compute.compute_dtype,
                                attention=compute.attention), params, info)


def _load_checkpoint(config: ml_collections.ConfigDict, path: Path
                     ) -> tuple[VRPSamConfig, dict, dict]:
    if (path / "config.json").is_file():
        trained, model, params, info = restore_trained(path, "best")
        info = {**info, "trained_on": {"benchmark": trained.data.benchmark,
                                       "fold": trained.data.fold,
                                       "condition": trained.data.condition}}
        return model, params, info
    if not config.init.sam_checkpoint:
        raise InputError(f"{path}: a VRP checkpoint without SAM; set "
                         "--config.init.sam_checkpoint=<SAM .pth or converted directory>")
    vrp = load_vrp(path, config.model.backbone)
    sam = sam_port.load_sam(config.init.sam_checkpoint, config.model.sam_type)
    model = VRPSamConfig(vrp.backbone, sam.model_type, config.model.image_size, vrp.num_queries,
                         config.model.num_heads)
    return model, {**vrp.params, "sam": sam.params}, {"which": "release", "path": str(path)}


def _original_size_areas(source, episodes):
    """Areas against the original-size ground truth: logits resized (bilinear,
    align_corners=True, as the release's --use_original_imgsize)."""

    def areas(batch: dict, logits: np.ndarray) -> np.ndarray:
        out = []
        for row, index in enumerate(batch["index"]):
            episode = episodes[int(index)]
            truth, ignore = source.masks(episode.query, episode.class0)
            pred = logits_to_size(logits[row], *truth.shape) >= 0
            out.append(episode_areas(pred[None], truth[None], ignore[None])[0])
        return np.stack(out)

    return areas


def evaluate_fold(config: ml_collections.ConfigDict, checkpoint: str | Path, fold: int,
                  settings: EvalSettings, output_dir: str | Path | None = None,
                  progress: bool = True) -> dict:
    """One fold -> {"miou", "fb_iou", "class_iou", "episodes", ...}; writes the figure of the
    first `settings.figures` episodes under `output_dir`."""
    start = time.perf_counter()
    model, params, info = load_checkpoint(config, checkpoint)
    benchmark = settings.benchmark
    source = make_source("pascal" if benchmark == "coco2pascal" else benchmark,
                         config.data.root or None)
    present = (source.present_classes
               if benchmark == "pascal" and settings.protocol == "vrp" else None)
    episodes = protocols.episodes(benchmark, fold, settings.shots, settings.protocol,
                                  settings.num_episodes, present)
    classes = protocols.evaluation_classes(benchmark, fold)
    mesh = make_mesh(config.mesh.data, config.mesh.model)
    batch = config.train.global_batch
    rows: list[np.ndarray] = []
    meter = evaluate_params(
        model, params, source, episodes, classes, settings.condition, mesh, batch,
        workers=config.data.workers or None, progress=progress, desc=f"fold {fold}",
        on_batch=(lambda b, logits: episode_rows(b, logits, rows, settings.figures))
        if settings.figures else None,
        host_areas=_original_size_areas(source, episodes) if settings.original_size else None)
    result = {**meter.summary(), "fold": fold, "benchmark": benchmark,
              "shots": settings.shots, "protocol": settings.protocol,
              "condition": settings.condition, "original_size": settings.original_size,
              "checkpoint": str(checkpoint), "checkpoint_info": info,
              "class_names": {c: splits.class_name("pascal" if benchmark == "coco2pascal"
                                                   else benchmark, c) for c in classes
                              if benchmark != "fss"},
              "seconds": round(time.perf_counter() - start, 1)}
    if output_dir is not None and rows:
        figure = Path(output_dir) / f"episodes_fold{fold}.png"
        figure.parent.mkdir(parents=True, exist_ok=True)
        write_figure(rows, figure)
        result["figure"] = str(figure)
    return result


def evaluate_all_folds(config: ml_collections.ConfigDict, checkpoint: str, settings:
                       EvalSettings, output_dir: str | Path, progress: bool = True) -> dict:
    """The four folds (checkpoint path with `{fold}`), the table in the paper's layout."""
    if "{fold}" not in checkpoint and not Path(checkpoint, "config.json").is_file():
        raise InputError(f"{checkpoint}: --all-folds needs one checkpoint per fold; put "
                         "{fold} in the path (runs/pascal_f{fold})")
    results = {}
    for fold in range(splits.NUM_FOLDS):
        results[fold] = evaluate_fold(config, checkpoint.format(fold=fold), fold, settings,
                                      output_dir, progress)
    table = fold_table(results)
    title = (f"{settings.benchmark}, {settings.shots}-shot, {settings.condition}, "
             f"protocol {settings.protocol}")
    markdown = table_markdown(table, title)
    write_results(output_dir, "all_folds", {"table": table, "folds": results,
                                            "settings": dataclasses.asdict(settings)}, markdown)
    return {"table": table, "markdown": markdown, "folds": results}

