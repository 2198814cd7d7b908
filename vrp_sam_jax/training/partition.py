"""Which parameters a run trains: path prefixes over the {"backbone", "encoder", "sam"} tree.

BatchNorm statistics (`mean`, `var`) are never trained. Frozen parameters get no gradient
and no optimizer state: the train step differentiates with respect to the trainable subtree
only, and the optimizer is built on that subtree.
"""

from __future__ import annotations

from collections.abc import Sequence

from flax import traverse_util

FROZEN_LEAVES = ("mean", "var")


def _trainable(path: tuple[str, ...], prefixes: Sequence[str]) -> bool:
    if path[-1] in FROZEN_LEAVES:
        return False
    joined = "/".join(path)
    return any(joined == p or joined.startswith(p.rstrip("/") + "/") for p in prefixes)


def split(params: dict, prefixes: Sequence[str]) -> tuple[dict, dict]:
    """params -> (trainable, frozen) nested dicts (disjoint; `merge` inverts)."""
    flat = traverse_util.flatten_dict(params)
    unknown = [p for p in prefixes if not any(_trainable(k, [p]) for k in flat)]
    if unknown:
        raise ValueError(f"trainable prefixes {unknown} match no parameter (parts: "
                         f"{sorted({k[0] for k in flat})})")
    trainable = {k: v for k, v in flat.items() if _trainable(k, prefixes)}
    frozen = {k: v for k, v in flat.items() if not _trainable(k, prefixes)}
    return traverse_util.unflatten_dict(trainable), traverse_util.unflatten_dict(frozen)


def merge(trainable: dict, frozen: dict) -> dict:
    flat = traverse_util.flatten_dict(frozen)
    flat.update(traverse_util.flatten_dict(trainable))
    return traverse_util.unflatten_dict(flat)
