"""Read PyTorch checkpoint files into numpy arrays without PyTorch.

`torch.save` writes a zip archive: `<name>/data.pkl` is a pickle whose tensors point at raw
storages `<name>/data/<key>`. A restricted unpickler rebuilds every tensor as a numpy array
(strides and storage offsets honoured, shared storages shared), and refuses every other global,
so loading a checkpoint never runs code from the file. Legacy (pre-1.6, non-zip) files are read
with `torch.load` when PyTorch is installed.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the file and the problem in the message."""


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> np.ndarray:
    if len(size) == 0:
        return storage[offset : offset + 1].reshape(()).copy()
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)  # a contiguous copy, detached from the storage buffer


def _rebuild_parameter(data, *_unused) -> np.ndarray:
    return data


def _ordered_dict(*args, **kwargs):
    return collections.OrderedDict(*args, **kwargs)


_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
}


class _ZipUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name.endswith("Storage"):
            raise CheckpointError(f"{self._path}: unsupported tensor storage type torch.{name}")
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in ("Size", "device"):
            return tuple if name == "Size" else str
        raise CheckpointError(
            f"{self._path}: the checkpoint pickles '{module}.{name}', which is not part of a "
            "plain state dict; refusing to execute it"
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        kind, storage_type, key, _location, numel = pid
        if kind != "storage":
            raise CheckpointError(f"{self._path}: unknown persistent id {kind!r}")
        if key not in self._storages:
            dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else None
            if dtype is None:
                raise CheckpointError(f"{self._path}: untyped storage {key} is not supported")
            raw = self._archive.read(f"{self._prefix}data/{key}")
            data = np.frombuffer(raw, dtype=dtype)
            if data.size < numel:
                raise CheckpointError(f"{self._path}: storage {key} is truncated")
            self._storages[key] = data
        return self._storages[key]


def load_torch_file(path: str | Path) -> Any:
    """Load a `torch.save` file; tensors come back as numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        return _load_legacy(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if len(pickles) != 1:
                raise CheckpointError(f"{path}: not a PyTorch checkpoint (no single data.pkl)")
            prefix = pickles[0][: -len("data.pkl")]
            byteorder = f"{prefix}byteorder"
            if byteorder in archive.namelist() and archive.read(byteorder) != b"little":
                raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
            with archive.open(pickles[0]) as f:
                return _ZipUnpickler(f, archive, prefix, path).load()
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, KeyError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated PyTorch checkpoint ({e})") from e


def _load_legacy(path: Path) -> Any:
    try:
        import torch
    except ImportError as e:
        raise CheckpointError(
            f"{path}: not a zip-format PyTorch checkpoint; legacy files need PyTorch to read"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({e})") from e

    def to_numpy(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.detach().float().numpy() if x.dtype == torch.bfloat16 else x.numpy()
        if isinstance(x, dict):
            return type(x)((k, to_numpy(v)) for k, v in x.items())
        return x

    return to_numpy(obj)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a flat `{name: array}` state dict (unwrapping a top-level 'state_dict'/'model')."""
    obj = load_torch_file(path)
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if wrapper in obj and isinstance(obj[wrapper], dict) and len(obj) <= 4:
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return dict(obj)
