"""Read PyTorch checkpoint files into numpy arrays without PyTorch.

`torch.save` writes a zip archive: `<name>/data.pkl` is a pickle whose tensors point at raw
storages `<name>/data/<key>`. A restricted unpickler rebuilds every tensor as a numpy array
(strides and storage offsets honoured, shared storages shared), and refuses every other global,
so loading a checkpoint never runs code from the file. Legacy (pre-1.6, non-zip) files are read
with `torch.load` when PyTorch is installed.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
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


# Bounds that no real checkpoint reaches (SAM ViT-H is 2.5 GB in all), so that a hostile file
# cannot make the reader allocate without limit before its sizes are checked.
MAX_STORAGE_BYTES = 8 << 30
MAX_PICKLE_BYTES = 256 << 20
MAX_MEMO_INDEX = 1 << 22
MAX_DEFLATE_RATIO = 1032  # deflate's best case
# Tensors may view one storage several times (tied weights, a fused projection's parts), but
# their bytes together never reach this many times the storages' bytes in a real checkpoint;
# a crafted one (200 views of one large storage) would make the reader hold each view whole.
MAX_VIEW_RATIO = 4
MAX_VIEW_SLACK = 1 << 20  # small files: scalars and tiny tensors over empty storages


class _MalformedError(ValueError):
    """Raised inside the unpickler; reported as a CheckpointError naming the file."""


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _MalformedError(f"tensor {what} {value!r} is not a tuple of integers")
    return tuple(value)


def _rebuild_tensor(storage, offset, size, stride, *_unused) -> np.ndarray:
    """The tensor `storage[offset]` viewed with `size` and `stride` (in elements), after
    checking that every element it reads lies inside the storage. A C-contiguous tensor (what
    `torch.save` writes for parameters) is a read-only view of its storage, so tensors over
    one storage share its memory; any other layout is copied."""
    if not isinstance(storage, np.ndarray):
        raise _MalformedError("a tensor's storage is not a storage record")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    (offset,) = _ints((offset,), "offset")
    if len(size) != len(stride) or offset < 0 or any(v < 0 for v in size + stride):
        raise _MalformedError(f"tensor size {size}, stride {stride}, offset {offset} is invalid")
    count = int(np.prod(size, dtype=object))
    if count == 0:
        return np.zeros(size, storage.dtype)
    extent = offset + sum((n - 1) * st for n, st in zip(size, stride, strict=True)) + 1
    if extent > storage.size or count > storage.size:
        raise _MalformedError(f"tensor of size {size}, stride {stride}, offset {offset} reaches "
                         f"past its storage of {storage.size} elements")
    if len(size) == 0:
        return storage[offset : offset + 1].reshape(()).copy()
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * itemsize for s in stride),
        writeable=False)
    return view if view.flags.c_contiguous else np.array(view)


def _rebuild_parameter(data, *_unused) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise _MalformedError("a parameter holds no tensor")
    return data


def _ordered_dict(*args, **kwargs):
    return collections.OrderedDict(*args, **kwargs)


# (the tensor rebuilders are the unpickler's own method: it counts their bytes)
_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
}
_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"}


class _ZipUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._storages: dict[str, np.ndarray] = {}
        self._archive_size = path.stat().st_size
        self._storage_bytes = 0  # of all storages read
        self._tensor_bytes = 0  # of all tensors made from them

    def _tensor(self, storage, offset, size, stride, *rest) -> np.ndarray:
        """`_rebuild_tensor`, counting the bytes of all tensors against the storages'."""
        tensor = _rebuild_tensor(storage, offset, size, stride, *rest)
        self._tensor_bytes += tensor.nbytes
        allowed = MAX_VIEW_RATIO * self._storage_bytes + MAX_VIEW_SLACK
        if self._tensor_bytes > allowed:
            raise _MalformedError(
                f"its tensors view {self._tensor_bytes} bytes of {self._storage_bytes} bytes "
                f"of storage (more than {MAX_VIEW_RATIO} times: the same data many times over)")
        return tensor

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"),
                              ("torch._utils", "_rebuild_tensor")):
            return self._tensor
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
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
            raise _MalformedError(f"unknown persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise _MalformedError(f"storage {str(key)[:40]} has no known tensor type")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise _MalformedError(f"storage record {str(pid)[:80]} is invalid")
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, storage_type.dtype, numel)
        storage = self._storages[key]
        if storage.dtype != storage_type.dtype:
            raise _MalformedError(f"storage {key} is read with two different types")
        return storage

    def _read_storage(self, key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        """The bytes of `data/<key>`, after checking the sizes the zip declares."""
        try:
            info = self._archive.getinfo(f"{self._prefix}data/{key}")
        except KeyError:
            raise _MalformedError(f"storage {key} is missing from the archive") from None
        needed = numel * dtype.itemsize
        limit = (info.compress_size if info.compress_type == zipfile.ZIP_STORED
                 else info.compress_size * MAX_DEFLATE_RATIO)
        if info.file_size < needed:
            raise _MalformedError(f"storage {key} is truncated ({info.file_size} of {needed} "
                                  "bytes)")
        if needed > MAX_STORAGE_BYTES or info.file_size > min(limit, MAX_STORAGE_BYTES) or \
                info.compress_size > self._archive_size:
            raise _MalformedError(f"storage {key} declares an impossible size "
                             f"({info.file_size} bytes)")
        # zip entries may overlap in a crafted archive: the storages' total is bounded too
        self._storage_bytes += needed
        if self._storage_bytes > min(MAX_DEFLATE_RATIO * self._archive_size, MAX_STORAGE_BYTES):
            raise _MalformedError(f"its storages declare {self._storage_bytes} bytes in all, "
                                  f"more than a {self._archive_size}-byte archive can hold")
        raw = self._archive.read(info)
        return np.frombuffer(raw, dtype=dtype, count=numel)


def _check_pickle(data: bytes) -> None:
    """Walk the pickle's opcodes before running it: memo indices are bounded (the unpickler
    would otherwise allocate a memo as large as the largest index)."""
    for opcode, arg, _pos in pickletools.genops(data):
        if opcode.name in _MEMO_OPS and isinstance(arg, int) and not 0 <= arg < MAX_MEMO_INDEX:
            raise _MalformedError(f"memo index {arg} out of range")


def load_torch_file(path: str | Path) -> Any:
    """Load a `torch.save` file; tensors come back as numpy arrays. Every failure, however
    the file is damaged or crafted, is a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path}: corrupt or truncated PyTorch checkpoint (a damaged "
                                  "zip archive)")
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
            info = archive.getinfo(pickles[0])
            if info.file_size > MAX_PICKLE_BYTES:
                raise _MalformedError(f"data.pkl declares {info.file_size} bytes")
            data = archive.read(info)
            _check_pickle(data)
            return _ZipUnpickler(io.BytesIO(data), archive, prefix, path).load()
    except CheckpointError:
        raise
    except _MalformedError as e:
        raise CheckpointError(f"{path}: malformed PyTorch checkpoint ({e})") from e
    except Exception as e:  # any other damage: zip, zlib, pickle, memory
        raise CheckpointError(f"{path}: corrupt or truncated PyTorch checkpoint "
                              f"({type(e).__name__}: {str(e)[:200]})") from e


def _load_legacy(path: Path) -> Any:
    try:
        import torch
    except ImportError as e:
        raise CheckpointError(
            f"{path}: not a zip-format PyTorch checkpoint (a legacy file, from PyTorch < 1.6, "
            "or not a checkpoint); legacy files need PyTorch to read"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({first[:200]})"
                              ) from e

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
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray)
                                            for k, v in obj.items()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return dict(obj)
