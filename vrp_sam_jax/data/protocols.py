"""Evaluation episode lists, computed from the split lists alone (HSNet's `data/*.py`
samplers and the VRP-SAM release's `data/pascal.py`, `data/coco.py`).

`hsnet` replicates HSNet's samplers call for call on numpy's legacy global RNG seeded with 0,
which is what reproduces the published episodes: the RNG state is taken from a
`np.random.RandomState(0)` owned here (the same stream, no global state touched).

`vrp` replicates the VRP-SAM release's samplers (seed 321) as one process draws them. The
release itself draws its simulated points and scribbles from the same global numpy generator
between episodes and splits the episodes over its GPUs, so its own runs see episode lists that
depend on the condition and the GPU count; ours do not (conditions are seeded per episode).

`matcher` replicates Matcher's LVIS-92i sampler (aim-uofa/Matcher `matcher/data/lvis.py`;
`main_oss.py` seeds numpy with 0 and loads in order with 0 workers) over the dataset's
annotation file (`lvis.LvisSource.classwise()`).

`patnet` replicates PATNet's cross-domain samplers (slei109/PATNet `data/deepglobe.py`,
`data/isic.py`, `data/lung.py`, `data/fss.py`; `test.py` seeds numpy's global RNG with 0 and
loads with 0 workers, in order). PATNet lists the images from the dataset's folders, so these
samplers take the dataset's lists (`classwise`, from the reader: `sources.*.classwise()`).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from vrp_sam_jax.data import lvis, splits, toy_benchmark
from vrp_sam_jax.names import (
    CROSS_DOMAIN,
    HSNET_SEED,
    MATCHER_SEED,
    PATNET_BENCHMARKS,
    PATNET_SEED,
    PROTOCOLS,
    VRP_SEED,
)

EPISODES_PER_FOLD = 1000
PresentClasses = Callable[[str], Sequence[int]]
Classwise = Mapping[int, Sequence[str]]  # class0 -> the image stems of that class, in order
# PATNet's datasets: `num=600` (data/deepglobe.py, isic.py, lung.py) and their category
# folders '1'..'6', '1'..'3', '1' (class0 = folder - 1)
PATNET_EPISODES = 600
PATNET_CLASSES = {"deepglobe": 6, "isic": 3, "lung": 1}


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


def folds(benchmark: str) -> range:
    """A benchmark's folds (`--all-folds`): four, LVIS-92i's ten, none for the benchmarks
    evaluated whole (FSS-1000, PATNet's)."""
    if benchmark == "lvis":
        return range(lvis.NUM_FOLDS)
    return range(splits.NUM_FOLDS) if benchmark in (*splits.FOLD_BENCHMARKS, CROSS_DOMAIN
                                                     ) else range(0)


def evaluation_classes(benchmark: str, fold: int,
                       classwise: Classwise | None = None) -> list[int]:
    """The classes a fold's evaluation averages over (LVIS-92i: from the dataset's eligible
    categories, `classwise`)."""
    if benchmark == "lvis":
        return lvis.fold_classes(len(classwise or {}), fold)
    if benchmark == "coco2pascal":
        splits.check_fold("coco", fold)
        return list(splits.COCO_TO_PASCAL_FOLDS[fold])
    if benchmark == "fss":
        offset = splits.FSS_SPLIT_OFFSET["test"]
        return [offset + i for i in range(len(splits.fss_categories()["test"]))]
    if benchmark in PATNET_CLASSES:
        return list(range(PATNET_CLASSES[benchmark]))
    return splits.test_classes(benchmark, fold)


def fss_image_list(split: str = "test") -> list[str]:
    """HSNet's FSS-1000 image list: per category (split-file order), the sorted file names of
    the standard 10 images (`1.jpg` .. `10.jpg`, sorted as strings)."""
    names = sorted(f"{i}.jpg" for i in range(1, 11))
    return [f"{cat}/{n}" for cat in splits.fss_categories()[split] for n in names]


def _every_image_once(images: Sequence[tuple[str, int]], shots: int, num: int | None,
                      seed: int, suffix: str) -> list[Episode]:
    """FSS-1000's sampler (HSNet's and PATNet's `data/fss.py`): episode i's query is image
    i mod n; its supports are `<category>/<k><suffix>` for k = `np.random.choice(range(1, 11),
    1, replace=False)[0]`, until `shots` of them differ from the query."""
    rng = np.random.RandomState(seed)
    episodes = []
    for i in range(len(images) if num is None else num):
        query, cls = images[i % len(images)]
        category = query.rpartition("/")[0]
        supports = []
        while len(supports) < shots:
            name = f"{category}/{int(rng.choice(range(1, 11), 1, replace=False)[0])}{suffix}"
            if name != query:
                supports.append(name)
        episodes.append(Episode(query, tuple(supports), cls))
    return episodes


def hsnet_fss(shots: int, num: int | None = None, split: str = "test") -> list[Episode]:
    """FSS-1000 (HSNet: every image of the split is a query once; 2400 for test)."""
    categories = splits.fss_categories()[split]
    offset = splits.FSS_SPLIT_OFFSET[split]
    images = [(name, categories.index(name.split("/")[0]) + offset)
              for name in fss_image_list(split)]
    return _every_image_once(images, shots, num, HSNET_SEED, ".jpg")


def _cycled_classes(classes: Sequence[int], classwise: Classwise, shots: int, num: int,
                    seed: int) -> list[Episode]:
    """Episode i takes class `classes[i mod n]`; its query is `np.random.choice(images, 1,
    replace=False)[0]` over the class's images in order, the supports the same way until
    `shots` differ from the query (PATNet's and Matcher's samplers)."""
    rng = np.random.RandomState(seed)
    episodes = []
    for i in range(num):
        cls = classes[i % len(classes)]
        candidates = list(classwise[cls])
        query = str(rng.choice(candidates, 1, replace=False)[0])
        episodes.append(Episode(query, _draw_supports(rng, candidates, query, shots), cls))
    return episodes


def patnet_classwise(benchmark: str, classwise: Classwise, shots: int,
                     num: int = PATNET_EPISODES) -> list[Episode]:
    """PATNet's Deepglobe, ISIC and Chest X-ray sampler (`sample_episode` of
    data/deepglobe.py, isic.py, lung.py): episode i takes class i mod the number of classes;
    its query is `np.random.choice(images, 1, replace=False)[0]` from that class's list (the
    sorted file names of its folder), the supports the same way until `shots` differ from the
    query; numpy's generator seeded 0 (test.py)."""
    count = PATNET_CLASSES[benchmark]
    for cls in range(count):
        if len(set(classwise.get(cls, ()))) < 2:
            raise ValueError(f"{benchmark}: class {cls} has {len(classwise.get(cls, ()))} "
                             "image(s); an episode needs a query and a different reference")
    return _cycled_classes(range(count), classwise, shots, num, PATNET_SEED)


def fss_stems(split: str = "test") -> dict[int, list[str]]:
    """FSS-1000 as PATNet lists it without the dataset: the split's categories sorted (PATNet
    sorts them; HSNet's list does not), each with the standard `1.jpg` .. `10.jpg` sorted as
    file names; class = offset + sorted index; stems `category/n`."""
    names = sorted(f"{i}.jpg" for i in range(1, 11))
    return {splits.FSS_SPLIT_OFFSET[split] + i: [f"{cat}/{n.split('.')[0]}" for n in names]
            for i, cat in enumerate(sorted(splits.fss_categories()[split]))}


def patnet_fss(shots: int, num: int | None = None,
               classwise: Classwise | None = None) -> list[Episode]:
    """PATNet's FSS-1000 sampler (data/fss.py `sample_episode`): every image of the test
    categories (sorted), in order, is a query once (2400); supports are
    `np.random.choice(range(1, 11), 1, replace=False)[0]`, i.e. `<n>.jpg` of the query's
    category, until `shots` differ from the query; seed 0. `classwise`: the dataset's listing
    (`FssSource.classwise`), default `fss_stems()`."""
    listing = fss_stems() if classwise is None else classwise
    images = [(stem, cls) for cls in sorted(listing) for stem in listing[cls]]
    if not images:
        raise ValueError("fss: no test image listed")
    return _every_image_once(images, shots, num, PATNET_SEED, "")


def matcher_lvis(fold: int, shots: int, classwise: Classwise,
                 num: int = lvis.EPISODES_PER_FOLD) -> list[Episode]:
    """Matcher's LVIS-92i sampler (matcher/data/lvis.py `__getitem__`, `load_frame`): episode
    i takes the fold's class i mod its count; its query is `np.random.choice(list(images), 1,
    replace=False)[0]` over the class's images in the file's order, the supports the same way
    until `shots` differ from the query; numpy seeded 0 (main_oss.py). Matcher's own model
    also draws from numpy's global generator between episodes, so a Matcher run's episodes
    after the first depend on its model; these are the dataset's draws alone, the same for any
    model. `classwise`: class0 (eligible index) -> image stems."""
    classes = lvis.fold_classes(len(classwise), fold)
    if not classes:
        raise ValueError(f"lvis: {len(classwise)} eligible categories, fewer than the "
                         f"{lvis.NUM_FOLDS} folds")
    return _cycled_classes(classes, classwise, shots, num, MATCHER_SEED)


def default_protocol(benchmark: str) -> str:
    """The protocol a benchmark is evaluated with when none is named: the one that defines
    it where it has only one (PATNet's datasets, Matcher's LVIS-92i), HSNet's elsewhere."""
    if benchmark == "lvis":
        return "matcher"
    return "patnet" if benchmark in PATNET_CLASSES else "hsnet"


def _patnet(benchmark: str, shots: int, num: int | None,
            classwise: Classwise | None) -> list[Episode]:
    if benchmark not in PATNET_BENCHMARKS:
        raise ValueError(f"PATNet's protocol covers {', '.join(PATNET_BENCHMARKS)}, not "
                         f"{benchmark!r}")
    if benchmark == "fss":
        return patnet_fss(shots, num, classwise)
    if classwise is None:
        raise ValueError(f"{benchmark}: PATNet lists the images from the dataset's folders; "
                         "give the dataset root (--data-root DIR)")
    return patnet_classwise(benchmark, classwise, shots, num or PATNET_EPISODES)


def episodes(benchmark: str, fold: int, shots: int, protocol: str = "hsnet",
             num: int | None = None, present: PresentClasses | None = None,
             classwise: Classwise | None = None) -> list[Episode]:
    """The evaluation episodes of a benchmark fold under a named protocol. `present` (image
    name -> classes in its mask) refines the `vrp` PASCAL sampler when the dataset is at hand;
    `classwise` is the dataset's own listing, which the `patnet` samplers draw from."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; available: {', '.join(PROTOCOLS)}")
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    if num is not None and num < 1:
        raise ValueError(f"the number of episodes must be >= 1, got {num}")
    if protocol == "patnet":
        return _patnet(benchmark, shots, num, classwise)
    if benchmark in PATNET_CLASSES:
        raise ValueError(f"{benchmark} has PATNet's protocol only (--protocol patnet)")
    if (protocol == "matcher") != (benchmark == "lvis"):
        raise ValueError("LVIS-92i has Matcher's protocol only (--benchmark lvis --protocol "
                         "matcher)")
    if protocol == "matcher":
        if classwise is None:
            raise ValueError("lvis: Matcher draws from the dataset's annotation file; give "
                             "the dataset root (--data-root DIR)")
        return matcher_lvis(fold, shots, classwise, num or lvis.EPISODES_PER_FOLD)
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
    raise ValueError(f"unknown benchmark {benchmark!r} (pascal, coco, fss, toy, coco2pascal, "
                     f"{', '.join(PATNET_CLASSES)}, lvis)")


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


LISTING_PROTOCOLS = ("patnet", "matcher")  # they draw from the dataset's own listing


def dataset_lists(source, protocol: str) -> Classwise | None:
    """What a protocol's sampler draws from when it is the dataset's own listing (PATNet's
    folders, Matcher's annotation file: `source.classwise()`); None for the protocols that
    draw from the shipped split lists, and for readers that list nothing (`episodes` then
    says which benchmarks the protocol covers)."""
    if protocol not in LISTING_PROTOCOLS or not hasattr(source, "classwise"):
        return None
    return source.classwise()


def training_lists(source, benchmark: str, fold: int) -> Classwise | None:
    """The training classes' images when the dataset itself lists them (LVIS-92i: Matcher's
    training file, less the fold's test categories); None where the split lists do."""
    return source.training_classwise(fold) if benchmark == "lvis" else None


def _listed(classwise: Classwise | None, benchmark: str) -> Classwise:
    if classwise is None:
        raise ValueError(f"{benchmark}: the training images come from the dataset's own "
                         "files; give its root")
    return classwise


def training_images(benchmark: str, fold: int, classwise: Classwise | None = None
                    ) -> list[str]:
    """Every image a training episode of `fold` can use as its query (sorted); LVIS-92i's
    from `classwise` (`training_lists`)."""
    if benchmark == "lvis":
        return sorted({n for names in _listed(classwise, benchmark).values() for n in names})
    if benchmark == "coco":
        return sorted({n for names in splits.coco_classwise("trn", fold).values() for n in names})
    if benchmark == "pascal":
        return sorted(splits.pfenet_pascal("trn", fold)[0])
    if benchmark == "toy":
        novel = set(splits.test_classes("toy", fold))
        return [n for n in toy_benchmark.image_names("trn")
                if not novel & set(toy_benchmark.present_classes(n))]
    raise ValueError(f"no training split for benchmark {benchmark!r} (pascal, coco, toy, lvis)")


def _uniform_classes(rng: np.random.Generator, classwise: Classwise, base: Sequence[int],
                     shots: int) -> list[Episode]:
    """As many episodes as images, each of a class drawn uniformly, its query and supports
    uniformly from the class's images (the release's COCO sampler, Matcher's LVIS one)."""
    count = len({n for cls in base for n in classwise[cls]})
    out = []
    for _ in range(count):
        cls = int(_pick(rng, base))
        query = str(_pick(rng, classwise[cls]))
        out.append(Episode(query, _training_supports(rng, classwise[cls], query, shots), cls))
    return out


def training_episodes(benchmark: str, fold: int, shots: int, epoch: int, seed: int,
                      present: PresentClasses | None = None,
                      classwise: Classwise | None = None) -> list[Episode]:
    """One epoch of training episodes over the fold's base classes, a pure function of
    (benchmark, fold, shots, epoch, seed): the release's samplers with the epoch's own
    generator. PASCAL and the toy: every training image once, in a shuffled order, with one
    of its base classes; COCO and LVIS-92i: as many episodes as training images, class drawn
    uniformly (LVIS-92i's classes and images: `classwise`, from `training_lists`)."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    rng = np.random.default_rng([seed, epoch])
    if benchmark == "lvis":
        classwise = _listed(classwise, benchmark)
        return _uniform_classes(rng, classwise, sorted(classwise), shots)
    base = splits.train_classes(benchmark, fold)
    if benchmark == "coco":
        return _uniform_classes(rng, splits.coco_classwise("trn", fold), base, shots)
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
        raise ValueError(f"no training split for benchmark {benchmark!r} (pascal, coco, toy, "
                         "lvis)")
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
