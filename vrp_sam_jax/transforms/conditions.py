"""Reference annotations ("conditions", docs/COMPUTATION.md §3): simulated from a ground-truth mask
with a seeded generator (training, evaluation), or rasterised from what a person supplied.

All functions are pure: (H, W) {0,1} arrays in, (H, W) float32 {0,1} prompt masks out.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
from PIL import Image, ImageDraw

from vrp_sam_jax.names import CONDITIONS, VRP_SEED

MAX_POINTS = 20
MAX_STROKES = 20
EVAL_SCRIBBLE_SEED = VRP_SEED  # the release's `random.Random(321)`


@dataclasses.dataclass(frozen=True)
class StrokePreset:
    """Free-form stroke generator settings (Yu et al., "Free-Form Image Inpainting with Gated
    Convolution"; the SEEM presets the release uses). Integer bounds are [low, high)."""

    vertex_bound: tuple[int, int]
    max_head_speed: float
    max_head_acceleration: tuple[float, float]  # (speed, angle)
    brush_width_bound: tuple[int, int]
    move_point_ratio: float
    max_point_move: int
    max_line_acceleration: tuple[float, float]
    max_init_speed: float


STROKE_PRESETS = {
    "rand_curve": StrokePreset((10, 30), 20, (15, 0.5), (3, 10), 0.5, 3, (5, 0.5), 6),
    "rand_curve_small": StrokePreset((6, 22), 12, (8, 0.5), (2, 5), 0.5, 1, (3, 0.5), 3),
}


def _binary(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a reference mask must be 2-D (H, W), got shape {mask.shape}")
    return mask > 0


def box_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) mask -> (H, W) float32: the filled tight bounding box of all foreground pixels
    (empty for an empty mask)."""
    m = _binary(mask)
    out = np.zeros(m.shape, np.float32)
    ys, xs = np.nonzero(m)
    if len(ys):
        out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = 1
    return out


def point_mask(mask: np.ndarray, rng: np.random.Generator, num_points: int) -> np.ndarray:
    """(H, W) mask -> (H, W) float32: `num_points` distinct foreground pixels drawn uniformly
    (fewer if the mask is smaller)."""
    m = _binary(mask)
    flat = np.flatnonzero(m)
    chosen = rng.permutation(len(flat))[: min(num_points, len(flat))]
    out = np.zeros(m.size, np.float32)
    out[flat[chosen]] = 1
    return out.reshape(m.shape)


def _stroke(start: tuple[float, float], rng: np.random.Generator,
            p: StrokePreset) -> tuple[np.ndarray, np.ndarray, int]:
    """Control points (xs, ys) of one random stroke from `start`, moved once by a random
    velocity and jitter (the release draws the moved stroke), and its brush width."""
    width = int(rng.integers(*p.brush_width_bound))
    xs, ys = [float(start[0])], [float(start[1])]
    angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0, p.max_head_speed)
    for _ in range(int(rng.integers(*p.vertex_bound))):
        speed = np.clip(speed + rng.uniform(-p.max_head_acceleration[0],
                                            p.max_head_acceleration[0]), 0, p.max_head_speed)
        angle += rng.uniform(-p.max_head_acceleration[1], p.max_head_acceleration[1])
        xs.append(xs[-1] + speed * np.sin(angle))
        ys.append(ys[-1] + speed * np.cos(angle))
    xs, ys = np.array(xs), np.array(ys)
    line_speed = abs(rng.normal(0, p.max_init_speed / 2))
    line_angle = rng.uniform(0, 2 * np.pi)
    xs += int(line_speed * np.cos(line_angle))
    ys += int(line_speed * np.sin(line_angle))
    moved = rng.permutation(len(xs))[: int(len(xs) * p.move_point_ratio)]
    if p.max_point_move > 0:
        xs[moved] += rng.integers(-p.max_point_move, p.max_point_move, len(moved))
        ys[moved] += rng.integers(-p.max_point_move, p.max_point_move, len(moved))
    return xs, ys, width


def draw_strokes(shape: tuple[int, int], strokes: list[tuple[np.ndarray, np.ndarray, int]]
                 ) -> np.ndarray:
    """Rasterise strokes (polyline of width w with round joints) into an (H, W) bool mask."""
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for xs, ys, width in strokes:
        points = list(zip(xs.tolist(), ys.tolist(), strict=True))
        for a, b in zip(points[:-1], points[1:], strict=True):
            draw.line(a + b, fill=1, width=width)
        r = width // 2 - 1
        for x, y in points:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=1)
    return np.asarray(canvas) > 0


def scribble_mask(mask: np.ndarray, rng: np.random.Generator, num_strokes: int,
                  preset: str = "rand_curve") -> np.ndarray:
    """(H, W) mask -> (H, W) float32: random strokes started at distinct random foreground
    pixels, clipped to the mask."""
    m = _binary(mask)
    starts = np.argwhere(m)[rng.permutation(int(m.sum()))[:num_strokes]]
    strokes = [_stroke((x, y), rng, STROKE_PRESETS[preset]) for y, x in starts]
    return (draw_strokes(m.shape, strokes) & m).astype(np.float32)


def eval_scribble_setting(area: int) -> tuple[str, int]:
    """The release's evaluation preset and stroke count: drawn from `random.Random(321)` on
    every call, so the same for every episode ('rand_curve', 9 strokes for areas >= 20)."""
    preset = random.Random(EVAL_SCRIBBLE_SEED).choices(
        list(STROKE_PRESETS), weights=[0.5, 0.5], k=1)[0]
    count = random.Random(EVAL_SCRIBBLE_SEED).randint(1, min(MAX_STROKES, area))
    return preset, count


def simulate_condition(condition: str, mask: np.ndarray, rng: np.random.Generator,
                       training: bool = False) -> np.ndarray:
    """(H, W) prompt mask (float32) of `condition` for the (H, W) ground-truth `mask`
    (docs/COMPUTATION.md §3). Evaluation uses min(20, |M|) points and the fixed scribble
    setting; training draws counts from `rng`."""
    m = _binary(mask)
    area = int(m.sum())
    if condition == "mask":
        return m.astype(np.float32)
    if condition == "box":
        return box_mask(m)
    if area == 0:
        return np.zeros(m.shape, np.float32)
    if condition == "point":
        k = min(MAX_POINTS, area)
        return point_mask(m, rng, int(rng.integers(1, k + 1)) if training else k)
    if condition == "scribble":
        if training:
            preset = list(STROKE_PRESETS)[int(rng.integers(2))]
            count = int(rng.integers(1, min(MAX_STROKES, area) + 1))
        else:
            preset, count = eval_scribble_setting(area)
        return scribble_mask(m, rng, count, preset)
    raise ValueError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")


# --- annotations supplied by a person, in original image pixels ---------------------------
def _scale(shape: tuple[int, int], size: int) -> tuple[float, float]:
    h, w = shape
    return size / w, size / h


def rasterize_boxes(boxes: list[tuple[float, float, float, float]], image_shape: tuple[int, int],
                    size: int) -> np.ndarray:
    """Boxes x0,y0,x1,y1 (pixels of the original image) -> filled boxes on the size x size
    grid (union of all boxes, outward-rounded). A box is clipped to the image; one that lies
    wholly outside it, or is empty or not finite, is refused (ValueError)."""
    sx, sy = _scale(image_shape, size)
    out = np.zeros((size, size), np.float32)
    for box in boxes:
        x0, y0, x1, y1 = clip_box(box, image_shape)
        c0, r0 = int(np.floor(x0 * sx)), int(np.floor(y0 * sy))
        c1, r1 = int(np.ceil(x1 * sx)), int(np.ceil(y1 * sy))
        out[r0 : min(max(r1, r0 + 1), size), c0 : min(max(c1, c0 + 1), size)] = 1
    return out


def clip_box(box, image_shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """x0,y0,x1,y1 clipped to the image; ValueError for a box that is empty, not finite, or
    wholly outside it."""
    h, w = image_shape
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(np.isfinite((x0, y0, x1, y1))) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} is empty or not finite (need x0 < x1, y0 < y1)")
    x0, x1, y0, y1 = max(x0, 0.0), min(x1, float(w)), max(y0, 0.0), min(y1, float(h))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} lies outside the {w}x{h} image")
    return x0, y0, x1, y1


def check_point(point, image_shape: tuple[int, int]) -> tuple[float, float]:
    """x,y as floats; ValueError for a point outside the image or not finite."""
    h, w = image_shape
    x, y = (float(v) for v in point)
    if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < w and 0 <= y < h):
        raise ValueError(f"point {point} lies outside the {w}x{h} image")
    return x, y


def rasterize_points(points: list[tuple[float, float]], image_shape: tuple[int, int],
                     size: int) -> np.ndarray:
    """Points x,y (original pixels) -> one pixel each on the size x size grid, as the
    release's point condition marks single pixels. A point outside the image (or not
    finite) is refused (ValueError), not moved to the border."""
    sx, sy = _scale(image_shape, size)
    out = np.zeros((size, size), np.float32)
    for point in points:
        x, y = check_point(point, image_shape)
        out[min(int(np.floor(y * sy)), size - 1), min(int(np.floor(x * sx)), size - 1)] = 1
    return out


def rasterize_scribble(scribble: np.ndarray, size: int) -> np.ndarray:
    """A person's scribble (H, W), any non-zero pixel drawn -> size x size grid. Every source
    pixel that is drawn marks the target pixel it falls in, so thin strokes survive shrinking."""
    m = _binary(scribble)
    h, w = m.shape
    rows = np.minimum((np.arange(h) * size) // h, size - 1)
    cols = np.minimum((np.arange(w) * size) // w, size - 1)
    out = np.zeros((size, size), np.float32)
    ys, xs = np.nonzero(m)
    out[rows[ys], cols[xs]] = 1
    if size > h or size > w:  # growing: nearest resize fills the gaps between marked pixels
        from sam_port.interpolate import nearest_indices

        grown = m[nearest_indices(h, size)][:, nearest_indices(w, size)]
        out = np.maximum(out, grown.astype(np.float32))
    return out
