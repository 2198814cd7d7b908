"""File helpers: content hashes and writes that leave either the old file or the new one,
never half of either."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vrp_sam_jax.paths import AnyPath, as_path

CHUNK = 1 << 20


def sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes_atomic(path: str | AnyPath, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, flush it to disk, rename it over. On a
    bucket (a URL) the upload is all or nothing already: the object is written directly."""
    path = as_path(path)
    if not isinstance(path, Path):
        path.write_bytes(data)
        return
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def write_text_atomic(path: str | AnyPath, text: str) -> None:
    """`write_bytes_atomic` of the UTF-8 text."""
    write_bytes_atomic(path, text.encode())
