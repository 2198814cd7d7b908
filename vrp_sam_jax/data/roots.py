"""A benchmark's reader from its root, whichever form the root holds: the dataset's own
folders (`sources`) or what `vrp-sam pack` wrote (`packed`). Above both, so neither imports
the other to choose."""

from __future__ import annotations

from vrp_sam_jax.data import lvis, packed, sources
from vrp_sam_jax.errors import DataError
from vrp_sam_jax.names import PACKABLE_BENCHMARKS
from vrp_sam_jax.storage.paths import AnyPath


def make_source(benchmark: str, root: str | AnyPath | None = None, shots: int = 1
                ) -> sources.EpisodeSource:
    """The reader of `benchmark` ('toy' needs no `root`; the others read their folders or
    Matcher's files, or what `vrp-sam pack` made of them). LVIS-92i's classes depend on
    `shots` (Matcher keeps the categories with more than `shots` images)."""
    if benchmark in PACKABLE_BENCHMARKS and root is not None and packed.is_packed(root):
        return packed.open_packed(root, benchmark, shots)
    if benchmark == "lvis":
        if root is None:
            raise DataError("benchmark 'lvis' needs its dataset root (--data-root DIR)")
        return lvis.LvisSource(root, shots)
    return sources.folder_source(benchmark, root)
