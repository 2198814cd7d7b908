"""The device mesh and how arrays lie on it.

Axes ("data", "model"): episodes are split over "data"; parameters are replicated, except
that SAM's parameters may be split over "model" (ViT-H on small-memory devices). The same
code runs on 1 CPU, fake CPU devices, a GPU host or a TPU slice; with several hosts, each
host feeds its own rows of the global batch (`to_global`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import traverse_util
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh(data: int = -1, model: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, model) mesh over `devices` (default: all); data=-1 takes what model leaves."""
    devices = list(devices or jax.devices())
    if model < 1 or len(devices) % model:
        raise ValueError(f"model axis {model} does not divide the {len(devices)} devices")
    data = len(devices) // model if data == -1 else data
    if data * model != len(devices):
        raise ValueError(f"mesh {data}x{model} does not match the {len(devices)} devices")
    return jax.make_mesh((data, model), ("data", "model"),
                         axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def param_shardings(mesh: Mesh, params: dict, model_parts: Sequence[str] = ("sam",)) -> dict:
    """Replicated, except leaves under `model_parts` whose last axis divides by the model
    axis size, which are split along it when the mesh has a model axis > 1."""
    size = mesh.shape["model"]
    flat = traverse_util.flatten_dict(params)

    def rule(path, leaf):
        if size > 1 and path[0] in model_parts and leaf.ndim >= 2 and leaf.shape[-1] % size == 0:
            return NamedSharding(mesh, P(*([None] * (leaf.ndim - 1)), "model"))
        return replicated(mesh)

    return traverse_util.unflatten_dict({k: rule(k, v) for k, v in flat.items()})


def to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This host's rows -> global arrays split over the data axis."""
    sharding = batch_sharding(mesh)
    out = {}
    for key, local in batch.items():
        global_shape = (local.shape[0] * jax.process_count(), *local.shape[1:])
        out[key] = jax.make_array_from_process_local_data(sharding, local, global_shape)
    return out


def check_batch(global_batch: int, mesh: Mesh) -> None:
    if global_batch % mesh.shape["data"]:
        raise ValueError(f"the global batch ({global_batch}) must divide by the data axis "
                         f"({mesh.shape['data']} devices)")
