"""The embedded toy benchmark: generated on the fly, no download, no disk.

Eight object categories, each a (shape, colour, texture) triple, chosen so that every
attribute is shared between categories: a novel category is never told apart by one attribute
alone, and the reference is needed to say which object to segment. Each image holds two or
three objects of different categories (one per quadrant, so none is occluded) on a cluttered
background (a smooth colour field, noise, and desaturated strokes and blobs).

Four folds as on PASCAL-5i: fold f tests categories 2f and 2f+1 and trains on the other six.
An image is a pure function of its name (`trn/000042`, `val/000007`), so every process, host
and run sees the same pixels; its categories are known from the layout without rendering.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

TOY_SEED = 20240601
IMAGE_SIZE = 128
NUM_IMAGES = {"trn": 1600, "val": 400}
MIN_CATEGORY_PIXELS = 0  # every placed object is visible: presence comes from the layout

SHAPES = ("disk", "square", "triangle", "cross")
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230),
           "yellow": (235, 210, 40)}
TEXTURES = ("solid", "stripes", "dots", "checker")


@dataclasses.dataclass(frozen=True)
class Category:
    shape: str
    colour: str
    texture: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.texture} {self.shape}"


CATEGORIES = (
    Category("disk", "red", "solid"), Category("square", "green", "stripes"),
    Category("triangle", "blue", "dots"), Category("cross", "yellow", "checker"),
    Category("disk", "blue", "checker"), Category("square", "yellow", "dots"),
    Category("triangle", "red", "stripes"), Category("cross", "green", "solid"),
)
CLASS_NAMES = tuple(c.name for c in CATEGORIES)


@dataclasses.dataclass(frozen=True)
class ToyObject:
    category: int
    cx: float
    cy: float
    radius: float
    angle: float


def _rng(name: str) -> np.random.Generator:
    split, index = _parse(name)
    return np.random.default_rng([TOY_SEED, ("trn", "val").index(split), index])


def _parse(name: str) -> tuple[str, int]:
    split, _, index = name.partition("/")
    if split not in NUM_IMAGES or not index.isdigit() or int(index) >= NUM_IMAGES[split]:
        raise ValueError(f"{name!r} is not a toy image name (trn/000000..trn/"
                         f"{NUM_IMAGES['trn'] - 1:06d}, val/000000..val/"
                         f"{NUM_IMAGES['val'] - 1:06d})")
    return split, int(index)


def layout(name: str) -> tuple[ToyObject, ...]:
    """The objects of image `name`: 2-3 distinct categories, one per chosen quadrant."""
    rng = _rng(name)
    count = int(rng.integers(2, 4))
    categories = rng.permutation(len(CATEGORIES))[:count]
    quadrants = rng.permutation(4)[:count]
    half = IMAGE_SIZE / 2
    objects = []
    for cat, quad in zip(categories.tolist(), quadrants.tolist(), strict=True):
        radius = float(rng.uniform(0.30, 0.46) * half)
        cx = (quad % 2) * half + half / 2 + float(rng.uniform(-1, 1)) * (half / 2 - radius)
        cy = (quad // 2) * half + half / 2 + float(rng.uniform(-1, 1)) * (half / 2 - radius)
        objects.append(ToyObject(cat, cx, cy, radius, float(rng.uniform(0, 2 * np.pi))))
    return tuple(objects)


def _shape_mask(obj: ToyObject) -> np.ndarray:
    canvas = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw = ImageDraw.Draw(canvas)
    shape, r, (cx, cy) = CATEGORIES[obj.category].shape, obj.radius, (obj.cx, obj.cy)

    def poly(points: np.ndarray) -> None:
        c, s = np.cos(obj.angle), np.sin(obj.angle)
        rotated = points @ np.array([[c, s], [-s, c]]) + (cx, cy)
        draw.polygon([tuple(p) for p in rotated.tolist()], fill=1)

    if shape == "disk":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=1)
    elif shape == "square":
        h = r * 0.8
        poly(np.array([[-h, -h], [h, -h], [h, h], [-h, h]]))
    elif shape == "triangle":
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        poly(np.stack([np.cos(t), np.sin(t)], 1) * r)
    else:  # cross
        a, b = r, r * 0.33
        poly(np.array([[-a, -b], [a, -b], [a, b], [-a, b]]))
        poly(np.array([[-b, -a], [b, -a], [b, a], [-b, a]]))
    return np.asarray(canvas) > 0


def _texture(texture: str, angle: float) -> np.ndarray:
    """(H, W) shade factors in {0.45, 1}: the texture's dark and light parts."""
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    if texture == "solid":
        dark = np.zeros_like(xx, bool)
    elif texture == "stripes":
        dark = ((xx * np.cos(angle) + yy * np.sin(angle)) // 4) % 2 == 0
    elif texture == "dots":
        dark = ((xx % 7 - 3) ** 2 + (yy % 7 - 3) ** 2) <= 3
    else:  # checker
        dark = ((xx // 5) + (yy // 5)) % 2 == 0
    return np.where(dark, 0.45, 1.0).astype(np.float32)


def _background(rng: np.random.Generator) -> np.ndarray:
    coarse = rng.uniform(40, 200, size=(4, 4, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((IMAGE_SIZE, IMAGE_SIZE),
                                                      Image.BILINEAR), np.float32)
    field += rng.normal(0, 10, size=field.shape)
    canvas = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(8, 16))):  # clutter: desaturated strokes and blobs
        grey = rng.uniform(60, 200)
        colour = tuple(int(0.6 * grey + 0.4 * v) for v in rng.uniform(0, 255, 3))
        x, y = rng.uniform(0, IMAGE_SIZE, 2)
        if rng.random() < 0.5:
            dx, dy = rng.uniform(-40, 40, 2)
            draw.line((x, y, x + dx, y + dy), fill=colour, width=int(rng.integers(1, 5)))
        else:
            r = rng.uniform(3, 10)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    return np.asarray(canvas, np.float32)


def render(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Image `name` as (IMAGE_SIZE, IMAGE_SIZE, 3) uint8 and its label map (uint8, value =
    1-based category, 0 = background), as a dataset would store them."""
    objects = layout(name)
    rng = _rng(name)
    rng.integers(0, 2**31, size=64)  # decorrelate from the layout's draws
    image = _background(rng)
    label = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for obj in objects:
        cat = CATEGORIES[obj.category]
        mask = _shape_mask(obj)
        brightness = rng.uniform(0.85, 1.15)
        colour = np.clip(np.asarray(COLOURS[cat.colour], np.float32) * brightness, 0, 255)
        shade = _texture(cat.texture, obj.angle)[mask][:, None]
        image[mask] = colour * shade + rng.normal(0, 6, size=(int(mask.sum()), 3))
        label[mask] = obj.category + 1
    return np.clip(image, 0, 255).astype(np.uint8), label


def image_names(split: str) -> list[str]:
    if split not in NUM_IMAGES:
        raise ValueError(f"toy split must be one of {tuple(NUM_IMAGES)}, got {split!r}")
    return [f"{split}/{i:06d}" for i in range(NUM_IMAGES[split])]


@lru_cache(maxsize=4)
def classwise(split: str) -> dict[int, tuple[str, ...]]:
    """0-based category -> names of the `split` images that contain it, in name order."""
    out: dict[int, list[str]] = {c: [] for c in range(len(CATEGORIES))}
    for name in image_names(split):
        for obj in layout(name):
            out[obj.category].append(name)
    return {c: tuple(v) for c, v in out.items()}


def present_classes(name: str) -> tuple[int, ...]:
    """0-based categories of image `name`, ascending."""
    return tuple(sorted(obj.category for obj in layout(name)))
