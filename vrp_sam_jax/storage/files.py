"""File helpers: content hashes and writes that leave either the old file or the new one,
never half of either."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from sam_port.files import parse_json, replacing
from vrp_sam_jax.storage.paths import AnyPath, as_path

__all__ = ["parse_json", "replacing", "sha256", "write_atomic", "write_bytes_atomic",
           "write_text_atomic"]

CHUNK = 1 << 20


def sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> None:
    """`write(temporary path)`, then rename it to `path` (`replacing`): a killed or failed
    write leaves the old file or none, never half of one."""
    with replacing(path) as temporary:
        write(temporary)


def write_bytes_atomic(path: str | AnyPath, data: bytes) -> None:
    """Write `data` beside `path`, flush it to disk, rename it over (`replacing`). On a
    bucket (a URL) the upload is all or nothing already: the object is written directly."""
    path = as_path(path)
    if not isinstance(path, Path):
        path.write_bytes(data)
        return
    with replacing(path) as temporary, open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_text_atomic(path: str | AnyPath, text: str) -> None:
    """`write_bytes_atomic` of the UTF-8 text."""
    write_bytes_atomic(path, text.encode())
