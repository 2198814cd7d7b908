"""Evaluation episode lists (spec section 8), computed from the split lists alone.

`hsnet` replicates HSNet's samplers call for call on numpy's legacy global RNG seeded with 0,
which is what reproduces the published episodes: the RNG state is taken from a
`np.random.RandomState(0)` owned here (the same stream, no global state touched).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vrp_sam_jax.data import splits

EPISODES_PER_FOLD = 1000
PROTOCOLS = ("hsnet",)
FSS_SPLIT_OFFSET = {"trn": 0, "val": 520, "test": 760}


@dataclasses.dataclass(frozen=True)
class Episode:
    query: str
    supports: tuple[str, ...]
    class0: int  # 0-based class index

    def to_dict(self) -> dict:
        return {"query": self.query, "supports": list(self.supports), "class0": self.class0}


def _draw_supports(rng: np.random.RandomState, candidates: list[str], query: str,
                   shots: int) -> tuple[str, ...]:
    """HSNet: `np.random.choice(candidates, 1, replace=False)[0]` until `shots` names differ
    from the query (supports may repeat among themselves, as in HSNet)."""
    supports = []
    while len(supports) < shots:
        name = rng.choice(candidates, 1, replace=False)[0]
        if name != query:
            supports.append(str(name))
    return tuple(supports)


def hsnet_pascal(fold: int, shots: int, num: int = EPISODES_PER_FOLD) -> list[Episode]:
    metadata = splits.pascal_metadata("val", fold)
    classwise: dict[int, list[str]] = {c: [] for c in range(20)}
    for name, cls in metadata:
        classwise[cls].append(name)
    rng = np.random.RandomState(0)
    episodes = []
    for i in range(num):
        query, cls = metadata[i % len(metadata)]
        episodes.append(Episode(query, _draw_supports(rng, classwise[cls], query, shots), cls))
    return episodes


def hsnet_coco(fold: int, shots: int, num: int = EPISODES_PER_FOLD) -> list[Episode]:
    classwise = splits.coco_classwise("val", fold)
    class_ids = splits.test_classes("coco", fold)
    rng = np.random.RandomState(0)
    episodes = []
    for _ in range(num):
        cls = int(rng.choice(class_ids, 1, replace=False)[0])
        query = str(rng.choice(classwise[cls], 1, replace=False)[0])
        episodes.append(Episode(query, _draw_supports(rng, classwise[cls], query, shots), cls))
    return episodes


def fss_image_list(split: str = "test") -> list[str]:
    """HSNet's FSS-1000 image list: per category (split-file order), the sorted file names of
    the standard 10 images (`1.jpg` .. `10.jpg`, sorted as strings)."""
    names = sorted(f"{i}.jpg" for i in range(1, 11))
    return [f"{cat}/{n}" for cat in splits.fss_categories()[split] for n in names]


def hsnet_fss(shots: int, num: int | None = None, split: str = "test") -> list[Episode]:
    """FSS-1000 (HSNet: every image of the split is a query once; 2400 for test)."""
    categories = splits.fss_categories()[split]
    images = fss_image_list(split)
    rng = np.random.RandomState(0)
    episodes = []
    for i in range(len(images) if num is None else num):
        query = images[i % len(images)]
        cat = query.split("/")[0]
        supports = []
        while len(supports) < shots:
            name = f"{cat}/{int(rng.choice(range(1, 11), 1, replace=False)[0])}.jpg"
            if name != query:
                supports.append(name)
        episodes.append(Episode(query, tuple(supports),
                                categories.index(cat) + FSS_SPLIT_OFFSET[split]))
    return episodes


def episodes(benchmark: str, fold: int, shots: int, protocol: str = "hsnet",
             num: int | None = None) -> list[Episode]:
    """The evaluation episodes of a benchmark fold under a named protocol."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; available: {', '.join(PROTOCOLS)}")
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    if benchmark == "pascal":
        return hsnet_pascal(fold, shots, num or EPISODES_PER_FOLD)
    if benchmark == "coco":
        return hsnet_coco(fold, shots, num or EPISODES_PER_FOLD)
    if benchmark == "fss":
        return hsnet_fss(shots, num)
    raise ValueError(f"unknown benchmark {benchmark!r} (pascal, coco, fss)")


