"""A converted-weights directory: orbax parameters in `DIR/params` plus a JSON metadata file
naming the format and architecture. Shared by SAM, VRP-SAM and backbone weights."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from sam_port.files import parse_json, url_scheme
from sam_port.torch_pickle import CheckpointError


def _absolute(directory: str | os.PathLike) -> Path | epath.Path:
    """orbax takes absolute paths only; a URL (`gs://...`, an `epath.Path`) is one already."""
    if not isinstance(directory, Path) and url_scheme(directory) is not None:
        return epath.Path(directory)
    return Path(directory).absolute()


DIGEST = "params.sha256"  # the parameters' content checksum, beside them


def _host_copy(x) -> np.ndarray | None:
    """`x`'s whole value on this host, or None when this process holds only part of it."""
    if not isinstance(x, jax.Array):
        return np.asarray(x)
    if x.is_fully_addressable or x.sharding.is_fully_replicated:
        return np.asarray(x if x.is_fully_addressable else x.addressable_data(0))
    return None


def _name(path) -> str:
    """A leaf's path by its keys alone, whatever the containers (a dict read back from
    orbax's metadata where a named tuple was saved)."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                    for k in path)


def content_digest(tree) -> str | None:
    """SHA-256 over every leaf's path, dtype, shape and bytes (little-endian, C order), in
    path order: the same for the same values however they were placed or contained. None
    when this process does not hold every value whole (parameters split over processes)."""
    digest = hashlib.sha256()
    for name, leaf in sorted(((_name(p), x) for p, x in
                              jax.tree_util.tree_flatten_with_path(tree)[0]), key=lambda e: e[0]):
        value = _host_copy(leaf)
        if value is None:
            return None
        value = np.ascontiguousarray(value)
        value = value.astype(value.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{name}|{value.dtype.name}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def check_finite(tree, label: str) -> None:
    """A CheckpointError naming the first parameter with a NaN or infinity: such weights
    give empty or meaningless masks without a word."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        value = _host_copy(leaf)
        if (value is not None and np.issubdtype(value.dtype, np.inexact)
                and not np.isfinite(value).all()):
            bad = int(np.size(value) - np.isfinite(value).sum())
            raise CheckpointError(f"{label}: parameter {jax.tree_util.keystr(path)} holds "
                                  f"{bad} NaN or infinite values; these weights cannot be used")


def save_params_dir(directory: str | os.PathLike, params: dict, meta_name: str, meta: dict
                    ) -> Path | epath.Path:
    """Write `params`, their content checksum (`DIGEST`) and then the metadata (the directory
    is complete once it exists). With several processes, every process calls this together
    (orbax's save is collective) and the first writes the checksum and the metadata."""
    directory = _absolute(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # one process's arrays (a single device) as host arrays: orbax saves those from process 0
    params = jax.tree.map(lambda x: np.asarray(x) if getattr(x, "is_fully_addressable", True)
                          else x, params)
    digest = content_digest(params)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(directory / "params", params, force=True)
    if jax.process_index() == 0:
        if digest is not None:
            (directory / DIGEST).write_text(digest + "\n")
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
    """The parameters of `directory`, shaped and typed like `abstract`, checked against the
    checksum recorded when they were written (directories from before it have none) and
    for NaN or infinite values."""
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # this process's own
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=here),
                          abstract)
    try:
        with ocp.StandardCheckpointer() as ckptr:  # orbax takes absolute paths only
            params = ckptr.restore(_absolute(directory) / "params", target)
    except Exception as e:  # noqa: BLE001 - damaged files fail in orbax and TensorStore alike
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise CheckpointError(f"{directory}: cannot restore {what} parameters ({first})"
                              ) from e
    recorded = directory / DIGEST
    if recorded.is_file() and recorded.read_text().strip() != content_digest(params):
        raise CheckpointError(f"{directory}: its {what} parameters differ from the checksum "
                              f"recorded when it was written ({DIGEST}): the files are "
                              "damaged or were edited; write the directory again")
    check_finite(params, f"{directory}")
    return params
