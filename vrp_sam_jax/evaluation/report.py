"""Readable results: the fold table in the paper's layout (F-0 F-1 F-2 F-3 Mean) as text,
Markdown and JSON (the figures are `figures.py`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from vrp_sam_jax.runtime.processes import is_writer
from vrp_sam_jax.storage.files import write_text_atomic
from vrp_sam_jax.storage.paths import AnyPath, as_path


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


def write_results(directory: str | AnyPath, name: str, payload: dict, markdown: str) -> None:
    """`name.json` and `name.md`, each whole or not at all; with several processes, only the
    first writes (all of them hold the same numbers)."""
    if not is_writer():
        return
    directory = as_path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(directory / f"{name}.json", json.dumps(payload, indent=1))
    write_text_atomic(directory / f"{name}.md", markdown)
