"""A converted-weights directory: orbax parameters in `DIR/params` plus a JSON metadata file
naming the format and architecture. Shared by SAM, VRP-SAM and backbone weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from sam_port.files import parse_json
from sam_port.torch_pickle import CheckpointError


def _absolute(directory: str | os.PathLike) -> Path | epath.Path:
    """orbax takes absolute paths only; a URL (`gs://...`, an `epath.Path`) is one already."""
    if not isinstance(directory, Path) and "://" in os.fspath(directory):
        return epath.Path(directory)
    return Path(directory).absolute()


def save_params_dir(directory: str | os.PathLike, params: dict, meta_name: str, meta: dict
                    ) -> Path | epath.Path:
    """Write `params` and then the metadata (the directory is complete once it exists). With
    several processes, every process calls this together (orbax's save is collective) and
    the first writes the metadata."""
    directory = _absolute(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # one process's arrays (a single device) as host arrays: orbax saves those from process 0
    params = jax.tree.map(lambda x: np.asarray(x) if getattr(x, "is_fully_addressable", True)
                          else x, params)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(directory / "params", params, force=True)
    if jax.process_index() == 0:
        (directory / meta_name).write_text(json.dumps(meta, indent=2))
    return directory


def read_meta(directory: Path | epath.Path, meta_name: str, fmt: str, what: str) -> dict:
    """The metadata of a directory written by `save_params_dir`, checked to be `fmt`."""
    meta_path = directory / meta_name
    if not meta_path.is_file():
        raise CheckpointError(f"{directory}: not a converted {what} directory (no {meta_name})")
    meta = parse_json(meta_path.read_bytes(), str(meta_path), f"{what} metadata",
                      CheckpointError)
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{meta_path}: unknown format {found!r} (expected {fmt!r})")
    return meta


def restore_params_dir(directory: Path | epath.Path, abstract: dict, what: str) -> dict:
    """The parameters of `directory`, shaped and typed like `abstract`."""
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # this process's own
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=here),
                          abstract)
    try:
        with ocp.StandardCheckpointer() as ckptr:  # orbax takes absolute paths only
            return ckptr.restore(_absolute(directory) / "params", target)
    except (FileNotFoundError, ValueError) as e:
        raise CheckpointError(f"{directory}: cannot restore {what} parameters ({e})") from e
