"""Readable results: the fold table in the paper's layout (F-0 F-1 F-2 F-3 Mean) as text,
Markdown and JSON, and PNG grids of episodes (reference with its annotation, target,
prediction, ground truth)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from vrp_sam_jax.image_io import overlay

TILE = 192
ANNOTATION, PREDICTION, TRUTH = (255, 0, 255), (230, 40, 40), (40, 90, 240)


def fold_table(results: Mapping[int, Mapping[str, float]], metrics: Sequence[str] = ("miou",
                                                                                      "fb_iou")
               ) -> dict:
    """{fold: {"miou", "fb_iou", ...}} -> {metric: {"F-0": ..., ..., "Mean": ...}}."""
    table = {}
    for metric in metrics:
        row = {f"F-{f}": round(float(results[f][metric]), 1) for f in sorted(results)}
        row["Mean"] = round(float(np.mean([results[f][metric] for f in results])), 1)
        table[metric] = row
    return table


def table_markdown(table: Mapping[str, Mapping[str, float]], title: str = "") -> str:
    columns = list(next(iter(table.values())))
    lines = [f"**{title}**", ""] if title else []
    lines.append("| metric | " + " | ".join(columns) + " |")
    lines.append("| --- |" + " --- |" * len(columns))
    names = {"miou": "mIoU", "fb_iou": "FB-IoU"}
    for metric, row in table.items():
        lines.append(f"| {names.get(metric, metric)} | "
                     + " | ".join(f"{row[c]:.1f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_results(directory: str | Path, name: str, payload: dict, markdown: str) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(payload, indent=1))
    (directory / f"{name}.md").write_text(markdown)


def _tile(image: np.ndarray, mask: np.ndarray | None, colour) -> np.ndarray:
    out = image if mask is None else overlay(image, mask > 0, colour, alpha=0.55)
    return np.asarray(Image.fromarray(out).resize((TILE, TILE), Image.NEAREST))


def episode_rows(batch: dict, logits: np.ndarray, rows: list[np.ndarray], limit: int) -> None:
    """Append one row per valid episode of a batch, up to `limit` rows in all."""
    gap = np.full((TILE, 6, 3), 255, np.uint8)
    for i in np.flatnonzero(batch["valid"]):
        if len(rows) >= limit:
            return
        tiles = [_tile(batch["support_images"][i, 0], batch["support_masks"][i, 0], ANNOTATION),
                 _tile(batch["query_image"][i], None, None),
                 _tile(batch["query_image"][i], logits[i] >= 0, PREDICTION),
                 _tile(batch["query_image"][i], batch["query_mask"][i], TRUTH)]
        rows.append(np.concatenate([x for t in tiles for x in (t, gap)][:-1], 1))


def write_figure(rows: list[np.ndarray], path: str | Path) -> None:
    """Stack the rows into one PNG (columns: reference + annotation, target, prediction,
    ground truth)."""
    if not rows:
        return
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    Image.fromarray(np.concatenate([x for r in rows for x in (r, gap)][:-1], 0)).save(path)
