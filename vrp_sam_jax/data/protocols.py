"""Evaluation episode lists, computed from the split lists alone (HSNet's `data/*.py`
samplers and the VRP-SAM release's `data/pascal.py`, `data/coco.py`).

`hsnet` replicates HSNet's samplers call for call on numpy's legacy global RNG seeded with 0,
which is what reproduces the published episodes: the RNG state is taken from a
`np.random.RandomState(0)` owned here (the same stream, no global state touched).

`vrp` replicates the VRP-SAM release's samplers (seed 321) as one process draws them. The
release itself draws its simulated points and scribbles from the same global numpy generator
between episodes and splits the episodes over its GPUs, so its own runs see episode lists that
depend on the condition and the GPU count; ours do not (conditions are seeded per episode).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

import numpy as np

from vrp_sam_jax.data import splits, toy_benchmark
from vrp_sam_jax.names import HSNET_SEED, PROTOCOLS, VRP_SEED

EPISODES_PER_FOLD = 1000
PresentClasses = Callable[[str], Sequence[int]]
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
    rng = np.random.RandomState(HSNET_SEED)
    episodes = []
    for i in range(num):
        query, cls = metadata[i % len(metadata)]
        episodes.append(Episode(query, _draw_supports(rng, classwise[cls], query, shots), cls))
    return episodes


def _classwise_sampler(classwise: dict[int, list[str]], class_ids: list[int], shots: int,
                       num: int, seed: int) -> list[Episode]:
    """HSNet's (and the release's) COCO sampler: class = `np.random.choice(class_ids, 1,
    replace=False)[0]`, query the same way from that class's list, then the supports."""
    rng = np.random.RandomState(seed)
    episodes = []
    for _ in range(num):
        cls = int(rng.choice(class_ids, 1, replace=False)[0])
        query = str(rng.choice(classwise[cls], 1, replace=False)[0])
        episodes.append(Episode(query, _draw_supports(rng, classwise[cls], query, shots), cls))
    return episodes


def hsnet_coco(fold: int, shots: int, num: int = EPISODES_PER_FOLD) -> list[Episode]:
    return _classwise_sampler(splits.coco_classwise("val", fold),
                              splits.test_classes("coco", fold), shots, num, HSNET_SEED)


def vrp_coco(fold: int, shots: int, num: int = EPISODES_PER_FOLD) -> list[Episode]:
    """The release's COCO sampler (the same call pattern as HSNet's, seed 321). The release
    draws from PFENet-style COCO lists, which are not among the field's files we ship; the
    class lists here are HSNet's, which apply the same 2048-pixel filter."""
    return _classwise_sampler(splits.coco_classwise("val", fold),
                              splits.test_classes("coco", fold), shots, num, VRP_SEED)


def _listed_classes(classwise: dict[int, list[str]]) -> PresentClasses:
    present: dict[str, list[int]] = {}
    for cls, names in sorted(classwise.items()):
        for name in names:
            present.setdefault(name, []).append(cls)
    return lambda name: present.get(name, [])


def _listwise_sampler(images: list[str], classwise: dict[int, list[str]],
                      class_ids: list[int], present: PresentClasses, shots: int, num: int,
                      seed: int) -> list[Episode]:
    """The release's PASCAL sampler: query i = image i mod n; its class = the present classes
    of the fold (ascending) indexed by Python's `random.randint(1, n) - 1`; supports drawn
    with numpy as HSNet does. Python's and numpy's generators are both seeded `seed`."""
    py_rng, np_rng = random.Random(seed), np.random.RandomState(seed)
    allowed = set(class_ids)
    episodes = []
    for i in range(num):
        query = images[i % len(images)]
        classes = sorted(c for c in present(query) if c in allowed)
        if not classes:
            raise ValueError(f"{query}: none of the classes {sorted(allowed)} is present")
        cls = classes[py_rng.randint(1, len(classes)) - 1]
        episodes.append(Episode(query, _draw_supports(np_rng, classwise[cls], query, shots),
                                cls))
    return episodes


def vrp_pascal(fold: int, shots: int, num: int = EPISODES_PER_FOLD,
               present: PresentClasses | None = None) -> list[Episode]:
    """The release's PASCAL-5i episodes (PFENet's lists, seed 321).

    The release takes the query's classes from its mask (`unique()`, any pixel count);
    without the dataset, `present` defaults to the classes the lists record for the image
    (those covering >= 2048 pixels). Pass the dataset's `present_classes` for the exact
    release behaviour when a test class covers fewer pixels in a query image."""
    images, classwise = splits.pfenet_pascal("val", fold)
    return _listwise_sampler(images, classwise, splits.test_classes("pascal", fold),
                             present or _listed_classes(classwise), shots, num, VRP_SEED)


def toy_episodes(fold: int, shots: int, num: int = EPISODES_PER_FOLD,
                 seed: int = HSNET_SEED) -> list[Episode]:
    """The toy benchmark's evaluation episodes: the release's PASCAL sampler over the toy
    validation images that contain a novel category."""
    tested = splits.test_classes("toy", fold)
    classwise = {c: list(toy_benchmark.classwise("val")[c]) for c in tested}
    present = toy_benchmark.present_classes
    images = [n for n in toy_benchmark.image_names("val") if set(present(n)) & set(tested)]
    return _listwise_sampler(images, classwise, tested, present, shots, num, seed)


def coco_to_pascal(fold: int, shots: int, num: int = EPISODES_PER_FOLD) -> list[Episode]:
    """Cross-domain episodes (the paper's Table 4 setting): a model trained on COCO-20i fold
    `fold` is tested on the PASCAL classes whose COCO counterparts it never saw
    (`splits.COCO_TO_PASCAL_FOLDS`). HSNet's PASCAL val lists of the four folds, in order,
    restricted to those classes; query i = entry i; supports as in `hsnet` (seed 0)."""
    splits.check_fold("coco", fold)
    classes = set(splits.COCO_TO_PASCAL_FOLDS[fold])
    metadata = [(n, c) for f in range(splits.NUM_FOLDS)
                for n, c in splits.pascal_metadata("val", f) if c in classes]
    classwise: dict[int, list[str]] = {c: [] for c in sorted(classes)}
    for name, cls in metadata:
        classwise[cls].append(name)
    rng = np.random.RandomState(HSNET_SEED)
    return [Episode(query, _draw_supports(rng, classwise[cls], query, shots), cls)
            for query, cls in (metadata[i % len(metadata)] for i in range(num))]


def evaluation_classes(benchmark: str, fold: int) -> list[int]:
    """The classes a fold's evaluation averages over."""
    if benchmark == "coco2pascal":
        splits.check_fold("coco", fold)
        return list(splits.COCO_TO_PASCAL_FOLDS[fold])
    if benchmark == "fss":
        return [FSS_SPLIT_OFFSET["test"] + i for i in range(len(splits.fss_categories()["test"]))]
    return splits.test_classes(benchmark, fold)


def fss_image_list(split: str = "test") -> list[str]:
    """HSNet's FSS-1000 image list: per category (split-file order), the sorted file names of
    the standard 10 images (`1.jpg` .. `10.jpg`, sorted as strings)."""
    names = sorted(f"{i}.jpg" for i in range(1, 11))
    return [f"{cat}/{n}" for cat in splits.fss_categories()[split] for n in names]


def hsnet_fss(shots: int, num: int | None = None, split: str = "test") -> list[Episode]:
    """FSS-1000 (HSNet: every image of the split is a query once; 2400 for test)."""
    categories = splits.fss_categories()[split]
    images = fss_image_list(split)
    rng = np.random.RandomState(HSNET_SEED)
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
             num: int | None = None, present: PresentClasses | None = None) -> list[Episode]:
    """The evaluation episodes of a benchmark fold under a named protocol. `present` (image
    name -> classes in its mask) refines the `vrp` PASCAL sampler when the dataset is at hand."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; available: {', '.join(PROTOCOLS)}")
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    if num is not None and num < 1:
        raise ValueError(f"the number of episodes must be >= 1, got {num}")
    count = num or EPISODES_PER_FOLD
    if benchmark == "pascal":
        return (hsnet_pascal(fold, shots, count) if protocol == "hsnet"
                else vrp_pascal(fold, shots, count, present))
    if benchmark == "coco":
        return (hsnet_coco if protocol == "hsnet" else vrp_coco)(fold, shots, count)
    if benchmark == "fss":
        if protocol != "hsnet":
            raise ValueError("the VRP-SAM release has no FSS-1000 sampler; use protocol "
                             "'hsnet' (every test image a query once)")
        return hsnet_fss(shots, num)
    if benchmark == "toy":
        return toy_episodes(fold, shots, count, HSNET_SEED if protocol == "hsnet" else VRP_SEED)
    if benchmark == "coco2pascal":
        if protocol != "hsnet":
            raise ValueError("the cross-domain split has only the 'hsnet' protocol")
        return coco_to_pascal(fold, shots, count)
    raise ValueError(f"unknown benchmark {benchmark!r} (pascal, coco, fss, toy, coco2pascal)")


# --- training: episodes over the base classes, a different stream each epoch -------------
def _pick(rng: np.random.Generator, items: Sequence) -> object:
    return items[int(rng.integers(len(items)))]


def _training_supports(rng: np.random.Generator, candidates: Sequence[str], query: str,
                       shots: int) -> tuple[str, ...]:
    if not any(c != query for c in candidates):
        raise ValueError(f"{query}: the only image of its class; no reference to draw")
    supports: list[str] = []
    while len(supports) < shots:
        name = str(_pick(rng, candidates))
        if name != query:
            supports.append(name)
    return tuple(supports)


def training_images(benchmark: str, fold: int) -> list[str]:
    """Every image a training episode of `fold` can use as its query (sorted)."""
    if benchmark == "coco":
        return sorted({n for names in splits.coco_classwise("trn", fold).values() for n in names})
    if benchmark == "pascal":
        return sorted(splits.pfenet_pascal("trn", fold)[0])
    if benchmark == "toy":
        novel = set(splits.test_classes("toy", fold))
        return [n for n in toy_benchmark.image_names("trn")
                if not novel & set(toy_benchmark.present_classes(n))]
    raise ValueError(f"no training split for benchmark {benchmark!r} (pascal, coco, toy)")


def training_episodes(benchmark: str, fold: int, shots: int, epoch: int, seed: int,
                      present: PresentClasses | None = None) -> list[Episode]:
    """One epoch of training episodes over the fold's base classes, a pure function of
    (benchmark, fold, shots, epoch, seed): the release's samplers with the epoch's own
    generator. PASCAL and the toy: every training image once, in a shuffled order, with one
    of its base classes; COCO: as many episodes as training images, class drawn uniformly."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    rng = np.random.default_rng([seed, epoch])
    base = splits.train_classes(benchmark, fold)
    if benchmark == "coco":
        classwise = splits.coco_classwise("trn", fold)
        count = len({n for names in classwise.values() for n in names})
        out = []
        for _ in range(count):
            cls = int(_pick(rng, base))
            query = str(_pick(rng, classwise[cls]))
            out.append(Episode(query, _training_supports(rng, classwise[cls], query, shots),
                               cls))
        return out
    if benchmark == "pascal":
        images, classwise = splits.pfenet_pascal("trn", fold)
        present = present or _listed_classes(classwise)
    elif benchmark == "toy":
        # The toy's training images hold no novel category at all (unlike PASCAL's, where
        # novel objects are background): a random backbone has no prior that could keep the
        # model from learning to suppress them.
        novel = set(splits.test_classes("toy", fold))
        images = training_images("toy", fold)
        kept = set(images)
        classwise = {c: [n for n in v if n in kept]
                     for c, v in toy_benchmark.classwise("trn").items() if c not in novel}
        present = toy_benchmark.present_classes
    else:
        raise ValueError(f"no training split for benchmark {benchmark!r} (pascal, coco, toy)")
    allowed = set(base)
    out = []
    for index in rng.permutation(len(images)).tolist():
        query = images[index]
        classes = sorted(c for c in present(query) if c in allowed)
        if not classes:
            continue
        cls = int(_pick(rng, classes))
        out.append(Episode(query, _training_supports(rng, classwise[cls], query, shots), cls))
    return out
