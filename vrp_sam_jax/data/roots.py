"""A benchmark's reader from its root, whichever form the root holds: the dataset's own
folders (`sources`) or what `vrp-sam pack` wrote (`packed`). Above both, so neither imports
the other to choose."""

from __future__ import annotations

from vrp_sam_jax.data import packed, sources
from vrp_sam_jax.names import PACKABLE_BENCHMARKS
from vrp_sam_jax.storage.paths import AnyPath


def make_source(benchmark: str, root: str | AnyPath | None = None) -> sources.EpisodeSource:
    """The reader of `benchmark` ('pascal', 'coco', 'fss' need `root`, a folder layout or a
    packed dataset; 'toy' needs none)."""
    if benchmark in PACKABLE_BENCHMARKS and root is not None and packed.is_packed(root):
        return packed.open_packed(root, benchmark)
    return sources.folder_source(benchmark, root)
