"""The device mesh and how arrays lie on it, shared by training, evaluation and inference.

Axes ("data", "model"): episodes are split over "data"; parameters are replicated, except
that the MLPs of SAM's image encoder may be split over "model" (`param_shardings`). With several
processes, each feeds its own rows of the global batch (`to_global`) and reads its own rows
back (`host_rows`). Tested on 1 CPU device, 8 fake CPU devices and several CPU processes; it
has not run on a GPU or a TPU slice.

Also here: a fixed batch shape for a short last batch (`pad_rows`) and keeping one
asynchronous device call in flight while the host works (`one_in_flight`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import jax
import numpy as np
from flax import traverse_util
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vrp_sam_jax.errors import ConfigError


def make_mesh(data: int = -1, model: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, model) mesh over `devices` (default: all); data=-1 takes what model leaves."""
    devices = list(devices or jax.devices())
    if model < 1 or len(devices) % model:
        raise ConfigError(f"model axis {model} does not divide the {len(devices)} devices")
    data = len(devices) // model if data == -1 else data
    if data * model != len(devices):
        raise ConfigError(f"mesh {data}x{model} does not match the {len(devices)} devices")
    return jax.make_mesh((data, model), ("data", "model"),
                         axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def param_shardings(mesh: Mesh, params: dict) -> dict:
    """Replicated, except, on a mesh with a model axis > 1, the MLP of every block of SAM's
    image encoder (two thirds of its weights) split over it as Megatron-LM splits a
    transformer's MLP: `lin1` by its output features, `lin2` by its input features. Each chip
    then computes its share of the hidden features, and one sum over the model axis per block
    (an all-reduce of the block's activations) joins them.

    Why not more: attention's `qkv` holds (3, heads, head dim) flattened in its last axis, so a
    contiguous split is not by heads; and splitting every weight's last axis (this project's
    first rule) made XLA gather activations between layers: 49 GB of all-gathers per ViT-H
    evaluation step on v5e:2x2 with a model axis of 2 (`vrp-sam plan`, docs/LAUNCH.md)."""
    size = mesh.shape["model"]
    flat = traverse_util.flatten_dict(params)

    def rule(path, leaf):
        if size > 1 and path[:2] == ("sam", "image_encoder") and "mlp" in path:
            layer, kind = path[-2:]
            if layer == "lin1" and leaf.shape[-1] % size == 0:  # (in, hidden) and (hidden,)
                return NamedSharding(mesh, P(*([None] * (leaf.ndim - 1)), "model"))
            if (layer, kind) == ("lin2", "kernel") and leaf.shape[0] % size == 0:  # (hidden, out)
                return NamedSharding(mesh, P("model", None))
        return replicated(mesh)

    return traverse_util.unflatten_dict({k: rule(k, v) for k, v in flat.items()})


def put(tree, shardings):
    """Values every process holds alike (host arrays, or arrays on one of its devices) ->
    arrays placed by `shardings` (one sharding, or a matching tree). With several processes
    each builds its own shards from its copy: nothing is compared or sent between processes
    (`jax.device_put` would gather every value from every process to check it)."""
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)

    def one(x, where):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, where)  # already global
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, where, lambda index: host[index])

    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda x: one(x, shardings), tree)
    return jax.tree.map(one, tree, shardings)


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
        raise ConfigError(f"the global batch ({global_batch}) must divide by the data axis "
                         f"({mesh.shape['data']} devices)")


def host_rows(array: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded global array, in order."""
    shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
    rows, seen = [], set()
    for shard in shards:
        start = shard.index[0].start or 0
        if start not in seen:
            seen.add(start)
            rows.append(np.asarray(shard.data))
    return np.concatenate(rows)


def sum_over_processes(array: np.ndarray) -> np.ndarray:
    """The elementwise sum of `array` over all processes (itself with one process)."""
    if jax.process_count() == 1:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(array))).sum(0)


def pad_rows(array: np.ndarray, size: int) -> np.ndarray:
    """`array` with its last row repeated up to `size` rows (a fixed batch shape, so one
    compiled program serves a short last batch too)."""
    missing = size - len(array)
    return array if missing <= 0 else np.concatenate([array, np.repeat(array[-1:], missing, 0)])


Item = TypeVar("Item")
Result = TypeVar("Result")


def one_in_flight(items: Iterable[Item], dispatch: Callable[[Item], Result]
                  ) -> Iterator[tuple[Item, Result]]:
    """(item, dispatch(item)) for each item, in order, one step late: `dispatch(item i + 1)`
    is called before item i is handed back, so an asynchronous device call (a jitted
    function) computes the next item while the caller works on the previous result."""
    pending = None
    for item in items:
        result = dispatch(item)
        if pending is not None:
            yield pending
        pending = (item, result)
    if pending is not None:
        yield pending
