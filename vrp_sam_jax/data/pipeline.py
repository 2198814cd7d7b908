"""Episodes -> numpy batches: PIL decode, resize to the model's grid (bilinear images, nearest
masks: docs/COMPUTATION.md §1), reference simulation seeded per episode, sharded per host,
prefetched by worker threads (PIL decodes and resizes outside the GIL).

A batch is a dict of numpy arrays with a leading per-host batch axis:
- `query_image` (B, S, S, 3) uint8, `support_images` (B, K, S, S, 3) uint8 (normalised on
  the device: `preprocess.normalize_image` semantics);
- `query_mask` (B, S, S) uint8 {0, 1}; `query_ignore` (B, S, S) uint8 {0, 1} (PASCAL borders);
- `support_masks` (B, K, S, S) float32: the simulated reference annotation (the condition);
- `class0`, `index` (B,) int32; `query_size` (B, 2) int32 (original height, width);
- `valid` (B,) bool: False on the padding of a last, incomplete evaluation batch.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from vrp_sam_jax.data.protocols import Episode
from vrp_sam_jax.data.sources import EpisodeSource
from vrp_sam_jax.names import CONDITIONS
from vrp_sam_jax.runtime.sharding import pad_rows
from vrp_sam_jax.transforms.conditions import simulate_condition
from vrp_sam_jax.transforms.preprocess import resize_image, resize_mask_nearest

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class EpisodeOptions:
    image_size: int = 512
    condition: str = "mask"
    # training draws point/stroke counts per episode (docs/COMPUTATION.md §3)
    training: bool = False
    seed: tuple[int, ...] = (321,)  # the reference simulation's seed prefix

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise ValueError(f"unknown condition {self.condition!r}; choose from "
                             f"{', '.join(CONDITIONS)}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")


def load_episode(source: EpisodeSource, episode: Episode, index: int,
                 options: EpisodeOptions) -> Batch:
    """One episode's arrays (no batch axis). The reference annotation is drawn from a
    generator seeded with (*options.seed, index): the same for any batch size, worker count
    or device count."""
    size = options.image_size
    rng = np.random.default_rng([*options.seed, index])
    query = source.image(episode.query)
    foreground, ignore = source.masks(episode.query, episode.class0)
    support_images, support_masks = [], []
    for name in episode.supports:
        support_foreground, _ = source.masks(name, episode.class0)
        truth = resize_mask_nearest(support_foreground, size)
        support_images.append(resize_image(source.image(name), size))
        support_masks.append(simulate_condition(options.condition, truth, rng,
                                                training=options.training))
    return {
        "query_image": resize_image(query, size),
        "query_mask": resize_mask_nearest(foreground, size).astype(np.uint8),
        "query_ignore": resize_mask_nearest(ignore, size).astype(np.uint8),
        "support_images": np.stack(support_images),
        "support_masks": np.stack(support_masks).astype(np.float32),
        "class0": np.int32(episode.class0),
        "index": np.int32(index),
        "query_size": np.asarray(query.shape[:2], np.int32),
        "valid": np.bool_(True),
    }


def stack(examples: Sequence[Batch]) -> Batch:
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def pad_batch(batch: Batch, size: int) -> Batch:
    """Repeat the last example up to `size` rows, marked `valid = False`."""
    missing = size - len(batch["valid"])
    if missing <= 0:
        return batch
    out = {k: pad_rows(v, size) for k, v in batch.items()}
    out["valid"][-missing:] = False
    return out


def default_workers() -> int:
    return max(1, min(16, (os.cpu_count() or 1)))


class EpisodeLoader:
    """Batches of a fixed episode list, this host's share of each global batch.

    Global batch b holds episodes [b*G, (b+1)*G); host p of P loads rows
    [p*G/P, (p+1)*G/P) of it, so together the hosts cover the list once, in order. With
    `drop_remainder` False (evaluation) the last batch is padded (`valid` False).
    `embeddings(query names) -> (n, h, w, C)` (a cache's `get`) adds each query's cached SAM
    embedding as `embeddings`, read in the loader threads, ahead of the step."""

    def __init__(self, source: EpisodeSource, episodes: Sequence[Episode], global_batch: int,
                 options: EpisodeOptions, *, drop_remainder: bool = False,
                 process_index: int | None = None, process_count: int | None = None,
                 workers: int | None = None, prefetch_batches: int = 2,
                 embeddings: Callable[[Sequence[str]], np.ndarray] | None = None):
        if process_index is None or process_count is None:
            import jax

            process_index, process_count = jax.process_index(), jax.process_count()
        if global_batch < 1 or global_batch % process_count:
            raise ValueError(f"the global batch ({global_batch}) must be a positive multiple "
                             f"of the process count ({process_count})")
        if not episodes:
            raise ValueError("no episodes to load")
        self.source, self.episodes, self.options = source, list(episodes), options
        self.global_batch, self.drop_remainder = global_batch, drop_remainder
        self.per_host = global_batch // process_count
        self.offset = process_index * self.per_host
        self.workers = workers or default_workers()
        self.prefetch_batches = max(1, prefetch_batches)
        self.embeddings = embeddings

    def __len__(self) -> int:
        full, rest = divmod(len(self.episodes), self.global_batch)
        return full + (0 if self.drop_remainder or rest == 0 else 1)

    def _rows(self, batch_index: int) -> list[int]:
        start = batch_index * self.global_batch + self.offset
        return [i for i in range(start, start + self.per_host) if i < len(self.episodes)]

    def _load_one(self, index: int) -> Batch:
        example = load_episode(self.source, self.episodes[index], index, self.options)
        if self.embeddings is not None:
            example["embeddings"] = self.embeddings([self.episodes[index].query])[0]
        return example

    def _load(self, pool: ThreadPoolExecutor, batch_index: int) -> list[Future]:
        return [pool.submit(self._load_one, i) for i in self._rows(batch_index)]

    def batches(self, start: int = 0) -> Iterator[Batch]:
        """Batches `start`, `start + 1`, ... (resume a stream at a position)."""
        if not 0 <= start <= len(self):
            raise ValueError(f"start batch {start} outside 0..{len(self)}")
        with ThreadPoolExecutor(self.workers, thread_name_prefix="episodes") as pool:
            pending: collections.deque[list[Future]] = collections.deque()
            next_batch = start
            try:
                while pending or next_batch < len(self):
                    while next_batch < len(self) and len(pending) < self.prefetch_batches:
                        pending.append(self._load(pool, next_batch))
                        next_batch += 1
                    futures = pending.popleft()
                    examples = [f.result() for f in futures]
                    if not examples:  # this host's rows all lie past the end of the list
                        examples = [self._load_one(len(self.episodes) - 1)]
                        examples[0]["valid"] = np.bool_(False)
                    yield pad_batch(stack(examples), self.per_host)
            finally:
                for futures in pending:
                    for f in futures:
                        f.cancel()

    def __iter__(self) -> Iterator[Batch]:
        return self.batches()
