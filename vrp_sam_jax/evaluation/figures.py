"""Figures a person can read without this file open: episode grids and per-class IoU bars.

An episode grid has one row per episode:
- the reference, with its annotation drawn as an outline (a mask's contour, a box's rectangle,
  points and scribble strokes as given), in magenta with a black rim, so it cannot be taken
  for part of the image;
- the target;
- the prediction and the ground truth, tinted.

Above each row is the class name and the episode's IoU. Column titles name the annotation
kind, and a legend names the colours.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vrp_sam_jax.evaluation.metric import episode_areas
from vrp_sam_jax.runtime.processes import is_writer
from vrp_sam_jax.storage.files import write_bytes_atomic
from vrp_sam_jax.storage.image_io import overlay
from vrp_sam_jax.storage.paths import AnyPath

TILE = 192  # pixels per image tile
GAP = 6
CAPTION = 20  # the strip above a row: class and IoU
HEADER = 24  # column titles
LEGEND = 28
BAR_ROW, BAR_WIDTH, BAR_LABEL = 20, 240, 150  # the class chart
ANNOTATION, PREDICTION, TRUTH = (255, 0, 255), (230, 40, 40), (40, 90, 240)
RIM, WHITE, INK = (0, 0, 0), (255, 255, 255), (30, 30, 30)
LEGEND_ITEMS = (("reference annotation", ANNOTATION), ("prediction", PREDICTION),
                ("ground truth", TRUTH))


@functools.lru_cache(maxsize=4)
def _font(size: int = 13) -> ImageFont.FreeTypeFont:
    """Pillow's built-in font at `size`, loaded once per size."""
    return ImageFont.load_default(size=size)


def _grow(mask: np.ndarray) -> np.ndarray:
    """`mask` dilated by one pixel (8-neighbourhood)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.any([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], 0)


def annotation_outline(annotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stroke, rim) pixels that draw a binary annotation: the region's boundary two pixels
    wide (a thin scribble or a point is all boundary), and a one-pixel rim around it."""
    inner = ~_grow(~annotation)  # eroded by one pixel
    stroke = _grow(annotation & ~inner)
    return stroke, _grow(stroke) & ~stroke


def draw_annotation(image: np.ndarray, annotation: np.ndarray) -> np.ndarray:
    """The image with the annotation's outline drawn opaque (magenta on a black rim)."""
    stroke, rim = annotation_outline(annotation)
    out = image.copy()
    out[rim] = RIM
    out[stroke] = ANNOTATION
    return out


def episode_iou(logits: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None
                ) -> float:
    """One episode's foreground IoU in percent from (H, W) logits, truth and ignore (ignore
    pixels left out), as the metric counts it; 100 when prediction and truth are both empty."""
    inter, union = episode_areas(logits[None], truth[None],  # foreground: logits > 0
                                 None if ignore is None else ignore[None])[0, 1]
    return 100.0 * inter / union if union else 100.0


def _resized(array: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(array).resize((TILE, TILE), Image.NEAREST))


def _row_tiles(batch: dict, logits: np.ndarray, i: int) -> list[np.ndarray]:
    reference = _resized(batch["support_images"][i, 0])
    annotation = _resized(batch["support_masks"][i, 0].astype(np.uint8)) > 0
    target = _resized(batch["query_image"][i])
    prediction = _resized((logits[i] > 0).astype(np.uint8)) > 0  # as the metric counts
    truth = _resized(batch["query_mask"][i].astype(np.uint8)) > 0
    return [draw_annotation(reference, annotation), target,
            overlay(target, prediction, PREDICTION, alpha=0.55),
            overlay(target, truth, TRUTH, alpha=0.55)]


def _text_strip(text: str, width: int, height: int, centres: list[int] | None = None,
                titles: list[str] | None = None) -> np.ndarray:
    strip = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(strip)
    if titles is None:
        draw.text((4, height // 2), text, fill=INK, font=_font(), anchor="lm")
    else:
        for x, title in zip(centres, titles, strict=True):
            draw.text((x, height // 2), title, fill=INK, font=_font(14), anchor="mm")
    return np.asarray(strip)


def _row_width() -> int:
    return 4 * TILE + 3 * GAP


def episode_rows(batch: dict, logits: np.ndarray, rows: list[np.ndarray], limit: int,
                 class_name: Callable[[int], str] = str) -> None:
    """Append one captioned row per valid episode of a batch, up to `limit` rows in all."""
    gap = np.full((TILE, GAP, 3), 255, np.uint8)
    shots = batch["support_images"].shape[1]
    for i in np.flatnonzero(batch["valid"]):
        if len(rows) >= limit:
            return
        ignore = batch.get("query_ignore")
        iou = episode_iou(logits[i], batch["query_mask"][i],
                          None if ignore is None else ignore[i])
        caption = f"{class_name(int(batch['class0'][i]))}   IoU {iou:.1f}"
        if shots > 1:
            caption += f"   (first of {shots} references shown)"
        tiles = np.concatenate([x for t in _row_tiles(batch, logits, i) for x in (t, gap)][:-1],
                               1)
        rows.append(np.concatenate([_text_strip(caption, _row_width(), CAPTION), tiles], 0))


def _legend(width: int) -> np.ndarray:
    strip = Image.new("RGB", (width, LEGEND), WHITE)
    draw = ImageDraw.Draw(strip)
    x, y = 6, LEGEND // 2
    for label, colour in LEGEND_ITEMS:
        draw.rectangle((x, y - 6, x + 12, y + 6), fill=colour, outline=RIM)
        draw.text((x + 18, y), label, fill=INK, font=_font(), anchor="lm")
        x += 18 + int(_font().getlength(label)) + 24
    return np.asarray(strip)


def figure(rows: list[np.ndarray], condition: str) -> np.ndarray:
    """The rows under column titles (the reference's annotation kind named) and above the
    legend, as one RGB array."""
    width = _row_width()
    centres = [TILE // 2 + k * (TILE + GAP) for k in range(4)]
    titles = [f"reference ({condition})", "target", "prediction", "ground truth"]
    header = _text_strip("", width, HEADER, centres, titles)
    gap = np.full((GAP, width, 3), 255, np.uint8)
    body = [x for r in rows for x in (r, gap)][:-1]
    return np.concatenate([header, *body, _legend(width)], 0)


def _save(array: np.ndarray, path: str | AnyPath) -> None:
    """A PNG written whole or not at all."""
    png = io.BytesIO()
    Image.fromarray(array).save(png, format="PNG")
    write_bytes_atomic(path, png.getvalue())


def write_figure(rows: list[np.ndarray], path: str | AnyPath, condition: str) -> None:
    """The episode grid as a PNG. With several processes, the first writes its own
    episodes' rows."""
    if rows and is_writer():
        _save(figure(rows, condition), path)


def class_chart(class_iou: Mapping[int, float], class_name: Callable[[int], str] = str,
                title: str = "") -> np.ndarray:
    """Horizontal bars of per-class IoU (0-100), one row per class in the given order, the
    mean as the last bar."""
    items = [(class_name(c), float(v)) for c, v in class_iou.items()]
    items.append(("mean", float(np.mean([v for _, v in items]))))
    title = title or "per-class IoU (%)"
    title_width = int(_font(14).getlength(title))
    width = max(BAR_LABEL + BAR_WIDTH + 60, title_width + 12)
    height = HEADER + BAR_ROW * len(items) + GAP
    chart = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(chart)
    draw.text((6, HEADER // 2), title, fill=INK, font=_font(14), anchor="lm")
    for k, (label, value) in enumerate(items):
        y = HEADER + k * BAR_ROW
        draw.text((BAR_LABEL - 6, y + BAR_ROW // 2), label, fill=INK, font=_font(),
                  anchor="rm")
        length = round(BAR_WIDTH * min(max(value, 0.0), 100.0) / 100)
        colour = INK if label == "mean" else PREDICTION
        if length:
            draw.rectangle((BAR_LABEL, y + 3, BAR_LABEL + length - 1, y + BAR_ROW - 4),
                           fill=colour)
        draw.text((BAR_LABEL + length + 4, y + BAR_ROW // 2), f"{value:.1f}", fill=INK,
                  font=_font(), anchor="lm")
    return np.asarray(chart)


def write_class_chart(class_iou: Mapping[int, float], path: str | AnyPath,
                      class_name: Callable[[int], str] = str, title: str = "") -> None:
    if class_iou and is_writer():
        _save(class_chart(class_iou, class_name, title), path)
