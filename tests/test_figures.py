"""Episode figures and the per-class chart: the layout's size, the reference annotation drawn
where it was given (and nowhere else), the overlays, captions, titles and legend."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vrp_sam_jax.evaluation import figures as F
from vrp_sam_jax.storage.image_io import overlay


def _batch(rng: np.random.Generator, size: int = 64) -> tuple[dict, np.ndarray]:
    """Two episodes (the second padding, not drawn): a box annotation on the reference, a
    prediction covering half the truth."""
    images = rng.integers(0, 256, (2, 1, size, size, 3), dtype=np.uint8)
    annotation = np.zeros((2, 1, size, size), bool)
    annotation[:, 0, 16:48, 8:40] = True  # a box, y 16..47, x 8..39
    truth = np.zeros((2, size, size), bool)
    truth[:, 10:30, 10:50] = True  # 800 pixels
    logits = np.full((2, size, size), -3.0, np.float32)
    logits[:, 10:30, 10:30] = 2.0  # 400 of them
    batch = {"support_images": images, "support_masks": annotation,
             "query_image": rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8),
             "query_mask": truth, "query_ignore": np.zeros_like(truth),
             "class0": np.array([3, 3]), "valid": np.array([True, False])}
    return batch, logits


def test_episode_iou_counts_like_the_metric():
    truth = np.zeros((8, 8), bool)
    truth[:4] = True
    logits = np.where(np.arange(8)[:, None] < 2, 1.0, -1.0) * np.ones((8, 8))
    assert F.episode_iou(logits, truth) == 50.0
    ignore = np.zeros((8, 8), bool)
    ignore[2:4] = True  # the missed half ignored
    assert F.episode_iou(logits, truth, ignore) == 100.0
    assert F.episode_iou(np.zeros((8, 8)), np.zeros((8, 8), bool)) == 100.0  # 0 > 0 is empty


def test_episode_figure_layout_annotation_and_overlays(tmp_path):
    rng = np.random.default_rng(0)
    batch, logits = _batch(rng)
    rows: list[np.ndarray] = []
    F.episode_rows(batch, logits, rows, 8, {3: "cat"}.get)
    F.episode_rows(batch, logits, rows, 2, {3: "cat"}.get)
    assert len(rows) == 2  # one valid episode a call, up to the limit
    F.write_figure(rows, tmp_path / "episodes.png", "box")
    fig = np.asarray(Image.open(tmp_path / "episodes.png").convert("RGB"))
    tile, gap = F.TILE, F.GAP
    assert fig.shape == (F.HEADER + 2 * (F.CAPTION + tile) + gap + F.LEGEND,
                         4 * tile + 3 * gap, 3)
    top = F.HEADER + F.CAPTION  # the first row's tiles
    reference = fig[top : top + tile, :tile]
    plain = np.asarray(Image.fromarray(batch["support_images"][0, 0]).resize((tile, tile),
                                                                             Image.NEAREST))
    # the box's outline is drawn, opaque, on the box's edges at tile scale (x3)
    scale = tile // 64
    y0, y1, x0, x1 = 16 * scale, 48 * scale - 1, 8 * scale, 40 * scale - 1
    drawn = np.all(reference == F.ANNOTATION, -1)
    for y, x in ((y0, (x0 + x1) // 2), (y1, (x0 + x1) // 2), ((y0 + y1) // 2, x0),
                 ((y0 + y1) // 2, x1)):
        assert drawn[y, x], (y, x)
    # inside and outside the box the reference is the image itself, not tinted
    assert np.array_equal(reference[y0 + 8 : y1 - 8, x0 + 8 : x1 - 8],
                          plain[y0 + 8 : y1 - 8, x0 + 8 : x1 - 8])
    assert np.array_equal(reference[:y0 - 3], plain[:y0 - 3])
    stroke, rim = F.annotation_outline(np.asarray(Image.fromarray(
        batch["support_masks"][0, 0].astype(np.uint8)).resize((tile, tile), Image.NEAREST)) > 0)
    assert drawn.sum() == stroke.sum() and np.all(reference[rim] == F.RIM)
    # prediction (red) and truth (blue) tints, where they are
    target = fig[top : top + tile, tile + gap : 2 * tile + gap]
    prediction = fig[top : top + tile, 2 * (tile + gap) : 3 * tile + 2 * gap]
    truth = fig[top : top + tile, 3 * (tile + gap) :]
    def at_tile(mask: np.ndarray) -> np.ndarray:
        return np.kron(mask, np.ones((scale, scale), bool))

    assert np.array_equal(prediction, overlay(target, at_tile(logits[0] > 0), F.PREDICTION,
                                              alpha=0.55))
    assert np.array_equal(truth, overlay(target, at_tile(batch["query_mask"][0]), F.TRUTH,
                                         alpha=0.55))
    assert not np.array_equal(prediction, truth)
    # captions, column titles and the legend carry text (dark pixels on white)
    caption = fig[F.HEADER : top]
    header, legend = fig[: F.HEADER], fig[-F.LEGEND :]
    for strip in (caption, header, legend):
        assert (strip.sum(-1) < 200).sum() > 50
    for _, colour in F.LEGEND_ITEMS:  # every colour named has its swatch
        assert np.all(legend == colour, -1).sum() >= 100


def test_scribble_and_points_are_drawn_as_given():
    thin = np.zeros((64, 64), bool)
    thin[30, 5:60] = True  # a one-pixel scribble
    thin[10:13, 10:13] = True  # a point's disc
    stroke, rim = F.annotation_outline(thin)
    assert stroke[thin].all()  # every annotated pixel is drawn
    assert not (stroke & rim).any() and rim[29, 30] | stroke[29, 30]
    assert not stroke[50:].any() and not rim[50:].any()  # nothing far from it


def test_class_chart_bars_are_proportional(tmp_path):
    F.write_class_chart({0: 50.0, 1: 100.0, 2: 0.0}, tmp_path / "chart.png",
                        {0: "aeroplane", 1: "bicycle", 2: "bird"}.get)
    chart = np.asarray(Image.open(tmp_path / "chart.png").convert("RGB"))
    assert chart.shape[0] == F.HEADER + 4 * F.BAR_ROW + F.GAP  # 3 classes and the mean
    bars = np.all(chart == F.PREDICTION, -1)
    lengths = [int(bars[F.HEADER + k * F.BAR_ROW + F.BAR_ROW // 2].sum()) for k in range(3)]
    assert lengths == [F.BAR_WIDTH // 2, F.BAR_WIDTH, 0]
    mean = np.all(chart[F.HEADER + 3 * F.BAR_ROW + F.BAR_ROW // 2] == F.INK, -1)
    assert mean[F.BAR_LABEL : F.BAR_LABEL + F.BAR_WIDTH // 2].all()


def test_overlays_contrast_with_the_object_and_outline_it():
    """A red disk (the toy example's class) is not tinted red: the colour is the overlay
    palette's farthest from the object's own; its border is drawn opaque, its inside tinted,
    the rest untouched."""
    from vrp_sam_jax.storage.image_io import OVERLAY_COLOURS, contrasting_colour, outline

    image = np.full((40, 40, 3), 90, np.uint8)
    yy, xx = np.mgrid[:40, :40]
    disk = (yy - 20) ** 2 + (xx - 20) ** 2 < 12**2
    image[disk] = (220, 30, 30)
    colour = contrasting_colour(image, disk)
    assert colour in OVERLAY_COLOURS and colour[0] < 128  # not a red
    drawn = overlay(image, disk)
    edge = outline(disk)
    assert edge.any() and not edge[20, 20] and (edge <= disk).all()
    assert (drawn[edge] == colour).all()
    inside = disk & ~edge
    assert not (drawn[inside] == image[inside]).all(axis=-1).any()
    assert (drawn[~disk] == image[~disk]).all()
