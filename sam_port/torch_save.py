"""Write a state dict as `torch.save` does, without PyTorch: the mirror of `torch_pickle`.

The file is a zip archive: `archive/data.pkl` pickles an `OrderedDict` whose tensors are
`torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())` with each
storage a persistent id `("storage", torch.<Type>Storage, key, "cpu", numel)` whose bytes are
`archive/data/<key>` (little-endian, C order). `torch.load(path, weights_only=True)` reads it:
only the globals its restricted unpickler allows are written. The pickle is written opcode by
opcode (protocol 2), so nothing here imports torch or pickles arbitrary objects.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

from sam_port.files import replacing

_STORAGE_NAMES = {
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(ml_dtypes.bfloat16): "BFloat16Storage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}
_PREFIX = "archive"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + struct.pack("<B", value)
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + struct.pack("<B", len(data)) + data


def _tuple(items: list[bytes]) -> bytes:
    return b")" if not items else b"(" + b"".join(items) + b"t"


def _ordered_dict() -> bytes:
    return _global("collections", "OrderedDict") + b")R"


def _tensor(key: str, array: np.ndarray) -> bytes:
    storage = _tuple([_text("storage"), _global("torch", _STORAGE_NAMES[array.dtype]),
                      _text(key), _text("cpu"), _int(array.size)])
    strides = [s // array.itemsize for s in array.strides] if array.ndim else []
    args = _tuple([storage + b"Q", _int(0), _tuple([_int(d) for d in array.shape]),
                   _tuple([_int(s) for s in strides]), b"\x89", _ordered_dict()])
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_dict_pickle(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The `data.pkl` of a state dict whose i-th tensor is stored as record `data/<i>`."""
    items = [_text(name) + _tensor(str(i), array) for i, (name, array) in
             enumerate(arrays.items())]
    body = b"(" + b"".join(items) + b"u" if items else b""
    return b"\x80\x02" + _ordered_dict() + body + b"."


def save_state_dict(state_dict: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Write `{name: array}` to `path` in `torch.save`'s zip format, in the given key order.
    Written to a temporary file first, then renamed: a killed write leaves no half file."""
    path = Path(path)
    arrays = {}
    for name, value in state_dict.items():
        array = np.asarray(value)  # (np.ascontiguousarray would make a scalar 1-d)
        array = array if array.flags.c_contiguous else array.copy(order="C")
        if array.dtype not in _STORAGE_NAMES:
            raise TypeError(f"{name}: dtype {array.dtype} has no PyTorch storage type")
        arrays[name] = array.astype(array.dtype.newbyteorder("<"), copy=False)
    with replacing(path) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{_PREFIX}/data.pkl", state_dict_pickle(arrays))
        archive.writestr(f"{_PREFIX}/byteorder", "little")
        for i, array in enumerate(arrays.values()):
            archive.writestr(f"{_PREFIX}/data/{i}", array.tobytes())
        archive.writestr(f"{_PREFIX}/version", "3\n")
    return path
