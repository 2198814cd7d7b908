"""A model on a benchmark fold's episodes, or on all four folds: mIoU, FB-IoU, per-class IoU,
the paper's table and a figure of the first episodes.

The model comes in loaded (`model_io.load` reads every kind of checkpoint); this module only
evaluates it, with the shared evaluation step.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from vrp_sam_jax.data import protocols, splits
from vrp_sam_jax.data.sources import EpisodeSource
from vrp_sam_jax.errors import InputError
from vrp_sam_jax.evaluation.episodes import evaluate_params
from vrp_sam_jax.evaluation.figures import episode_rows, write_class_chart, write_figure
from vrp_sam_jax.evaluation.metric import episode_areas
from vrp_sam_jax.evaluation.report import fold_table, table_markdown, write_results
from vrp_sam_jax.evaluation.step import EvalStep, jit_eval_step, jit_gp_sam_step
from vrp_sam_jax.models import LoadedModel
from vrp_sam_jax.names import CROSS_DOMAIN
from vrp_sam_jax.runtime import sharding
from vrp_sam_jax.storage.paths import AnyPath, as_path
from vrp_sam_jax.transforms.preprocess import logits_to_size


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """What is measured: the episodes (benchmark, shots, protocol, count), the reference
    annotation, the resolution, and how the work is spread (batch, workers)."""

    benchmark: str  # pascal, coco, fss, toy, coco2pascal (cross-domain), deepglobe, isic, lung
    shots: int = 1
    protocol: str = "hsnet"
    condition: str = "mask"
    num_episodes: int | None = None
    original_size: bool = False
    figures: int = 8
    global_batch: int = 8
    workers: int | None = None
    method: str = "vrp"  # vrp (the model's VRP prompts) | gp-sam (the geometric baseline)
    gp_prompts: str = "box+point"  # GP-SAM's prompts (models.gp_sam.GP_PROMPTS)
    gp_threshold: float = 0.5  # GP-SAM's pseudo-mask threshold

    @property
    def dataset(self) -> str:
        """The benchmark whose images are read (cross-domain reads PASCAL's)."""
        return "pascal" if self.benchmark == CROSS_DOMAIN else self.benchmark

    def title(self, fold: int | None = None) -> str:
        has_folds = fold is not None and bool(protocols.folds(self.benchmark))
        where = f"{self.benchmark} fold {fold}" if has_folds else self.benchmark
        method = f", GP-SAM ({self.gp_prompts})" if self.method == "gp-sam" else ""
        return (f"{where}, {self.shots}-shot, {self.condition}, protocol {self.protocol}"
                f"{method}")

    def step(self, model: LoadedModel, mesh) -> EvalStep:
        """The evaluation step of the method measured."""
        if self.method == "gp-sam":
            return jit_gp_sam_step(model.config, mesh, self.gp_prompts, self.gp_threshold)
        return jit_eval_step(model.config, mesh)


def _original_size_areas(source: EpisodeSource, episodes: list[protocols.Episode]):
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


def evaluate_fold(model: LoadedModel, source: EpisodeSource, fold: int,
                  settings: EvalSettings, mesh, output_dir: str | AnyPath | None = None,
                  progress: bool = True) -> dict:
    """One fold -> {"miou", "fb_iou", "class_iou", "episodes", ...}; writes the figure of the
    first `settings.figures` episodes under `output_dir`."""
    start = time.perf_counter()
    benchmark = settings.benchmark
    present = (source.present_classes
               if benchmark == "pascal" and settings.protocol == "vrp" else None)
    classwise = protocols.dataset_lists(source, settings.protocol)
    try:
        episodes = protocols.episodes(benchmark, fold, settings.shots, settings.protocol,
                                      settings.num_episodes, present, classwise)
    except ValueError as e:
        raise InputError(str(e)) from e
    classes = protocols.evaluation_classes(benchmark, fold, classwise)
    names = {c: splits.class_name(settings.dataset, c) for c in classes
             if benchmark not in ("fss", "lvis")}

    def name(c: int) -> str:
        return names.get(c, f"class {c}")

    rows: list[np.ndarray] = []
    params = sharding.put(model.params, sharding.param_shardings(mesh, model.params))
    meter = evaluate_params(
        model.config, params, source, episodes, classes, settings.condition, mesh,
        settings.global_batch, step=settings.step(model, mesh), workers=settings.workers,
        progress=progress,
        desc=f"fold {fold}",
        on_batch=(lambda b, logits: episode_rows(b, logits, rows, settings.figures, name))
        if settings.figures else None,
        host_areas=_original_size_areas(source, episodes) if settings.original_size else None)
    result = {**meter.summary(), "fold": fold, "benchmark": benchmark,
              "shots": settings.shots, "protocol": settings.protocol,
              "condition": settings.condition, "original_size": settings.original_size,
              "method": settings.method,
              **({"gp_prompts": settings.gp_prompts, "gp_threshold": settings.gp_threshold}
                 if settings.method == "gp-sam" else {}),
              "model": {"origin": model.origin, **model.info},
              "class_names": names,
              "seconds": round(time.perf_counter() - start, 1)}
    if output_dir is not None:
        output_dir = as_path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        chart = output_dir / f"class_iou_fold{fold}.png"
        write_class_chart(result["class_iou"], chart, name, f"{settings.title(fold)}: "
                          "per-class IoU (%)")
        result["class_chart"] = str(chart)
        if rows:
            figure = output_dir / f"episodes_fold{fold}.png"
            write_figure(rows, figure, settings.condition)
            result["figure"] = str(figure)
    return result


def fold_markdown(result: dict, settings: EvalSettings) -> str:
    """One fold's table and its per-class IoU, in Markdown."""
    fold = result["fold"]
    markdown = table_markdown(fold_table({fold: result}), settings.title(fold))
    return markdown + "\n| class | IoU |\n| --- | --- |\n" + "".join(
        f"| {result['class_names'].get(c, c)} | {v:.1f} |\n"
        for c, v in result["class_iou"].items())


def evaluate_all_folds(model_for_fold: Callable[[int], LoadedModel], source: EpisodeSource,
                       settings: EvalSettings, mesh, output_dir: str | AnyPath,
                       progress: bool = True) -> dict:
    """Every fold (four; LVIS-92i's ten), each with its own model (`model_for_fold(fold)`),
    and the table in the paper's layout (F-0 F-1 ... Mean), written as `all_folds.{json,md}`."""
    results = {fold: evaluate_fold(model_for_fold(fold), source, fold, settings, mesh,
                                   output_dir, progress)
               for fold in protocols.folds(settings.benchmark)}
    table = fold_table(results)
    markdown = table_markdown(table, settings.title())
    write_results(output_dir, "all_folds", {"table": table, "folds": results,
                                            "settings": dataclasses.asdict(settings)}, markdown)
    return {"table": table, "markdown": markdown, "folds": results}
