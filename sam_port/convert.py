"""PyTorch state dict <-> Flax parameter tree, by a mechanical naming rule.

Flax modules in this project are named after the PyTorch attributes they port, with list and
Sequential indices written `name_3` instead of `name.3`. So every Flax leaf has exactly one
PyTorch key, and a weight's layout follows from the leaf's kind:

  Dense `kernel` (in, out)        <- Linear `weight` (out, in), transposed
  Conv `kernel` (kh, kw, in, out) <- Conv2d `weight` (out, in, kh, kw)
  LayerNorm/BatchNorm `scale`     <- `weight`
  anything else                   <- the same name, same layout
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from sam_port.torch_pickle import CheckpointError

_INDEX = re.compile(r"_(\d+)$")


def torch_key(path: tuple[str, ...]) -> str:
    """The PyTorch state-dict key of the Flax leaf at `path`."""
    *modules, leaf = path
    modules = [_INDEX.sub(r".\1", m) for m in modules]
    leaf = {"kernel": "weight", "scale": "weight", "mean": "running_mean",
            "var": "running_var"}.get(leaf, leaf)
    return ".".join([*modules, leaf])


def to_flax_layout(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    """A PyTorch tensor in the layout of the Flax leaf at `path`."""
    if path[-1] == "kernel" and value.ndim == 2:
        return value.T
    if path[-1] == "kernel" and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    return value


def to_torch_layout(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    """Inverse of `to_flax_layout`."""
    if path[-1] == "kernel" and value.ndim == 2:
        return value.T
    if path[-1] == "kernel" and value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    return value


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def state_dict_to_params(
    state_dict: Mapping[str, np.ndarray],
    abstract: Mapping,
    *,
    source: str | Path,
    prefix: str = "",
    ignore: tuple[str, ...] = (),
    allow_unexpected: bool = False,
) -> dict:
    """Convert `state_dict` into a parameter tree shaped like `abstract` (e.g. from
    `jax.eval_shape`). `prefix` is prepended to every PyTorch key; keys of the state dict under
    `prefix` that no parameter consumes are an error unless matched by `ignore` (regexes) or
    `allow_unexpected`. Errors name `source` and list missing, unexpected and mis-shaped keys."""
    flat = flatten_dict(dict(abstract))
    out, missing, mismatched, used = {}, [], [], set()
    for path, leaf in flat.items():
        key = prefix + torch_key(path)
        if key not in state_dict:
            missing.append(key)
            continue
        used.add(key)
        value = to_flax_layout(path, np.asarray(state_dict[key]))
        if tuple(value.shape) != tuple(leaf.shape):
            mismatched.append(
                f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(leaf.shape)}"
            )
            continue
        out[path] = np.ascontiguousarray(value, dtype=leaf.dtype)
    unexpected = sorted(
        k for k in state_dict
        if k.startswith(prefix) and k not in used and not any(re.search(p, k) for p in ignore)
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched, 4)}")
    if unexpected and not allow_unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if problems:
        raise CheckpointError(f"{source}: does not match the model; " + "; ".join(problems))
    return unflatten_dict(out)


def params_to_state_dict(params: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    """A PyTorch-layout state dict of a Flax parameter tree (for exporting and for tests)."""
    return {
        prefix + torch_key(path): np.ascontiguousarray(to_torch_layout(path, np.asarray(v)))
        for path, v in flatten_dict(dict(params)).items()
    }
