"""Episodes of a dataset root (a local path or a bucket URL, folder or packed) into an .npz,
for tests/test_buckets.py: `python bucket_episodes.py ROOT EPISODES.json OUT [BENCHMARK]`
(default pascal); the reader's own listing too, where it has one."""

import json
import sys
from pathlib import Path

import numpy as np

from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions
from vrp_sam_jax.data.protocols import Episode
from vrp_sam_jax.data.roots import make_source

root, episodes_file, out, *rest = sys.argv[1:]
episodes = [Episode(q, tuple(s), c) for q, s, c in json.loads(Path(episodes_file).read_text())]
source = make_source(rest[0] if rest else "pascal", root)
arrays = {"kind": np.array(type(source).__name__)}
if hasattr(source, "classwise"):
    arrays["classwise"] = np.array(json.dumps(source.classwise()))
for condition, training in (("mask", False), ("box", True)):
    options = EpisodeOptions(48, condition, training=training, seed=(5, 1))
    batches = EpisodeLoader(source, episodes, 4, options, process_index=0, process_count=1,
                            workers=2)
    for i, batch in enumerate(batches):
        arrays.update({f"{condition}/{i}/{key}": value for key, value in batch.items()})
np.savez(out, **arrays)
