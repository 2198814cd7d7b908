"""Local paths and cloud URLs behind one pathlib-like type.

A dataset root, a work directory or a cache directory may be a local path (a `pathlib.Path`,
as always) or a URL such as `gs://bucket/run`, which becomes an `etils.epath.Path` (the same
methods: `/`, `open`, `exists`, `glob`, `iterdir`, `read_text`, ...). epath reaches a bucket
through fsspec (`gcsfs` for `gs://`, `s3fs` for `s3://`), installed with the `gcs` extra;
orbax writes checkpoints there through TensorStore's own client.

A bucket has no rename: an object appears whole when its upload finishes, so writes that are
atomic locally through a rename are plain writes there (`files.write_text_atomic`), and a
directory moves object by object (`move`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from etils import epath

from sam_port.files import url_scheme
from vrp_sam_jax.errors import InputError

AnyPath = Path | epath.Path
BACKENDS = {"gs": ("gcsfs", "pip install 'vrp-sam-jax[gcs]'"),
            "s3": ("s3fs", "pip install s3fs"),
            "az": ("adlfs", "pip install adlfs"),
            "hf": ("huggingface_hub", "pip install huggingface_hub")}


def is_url(path: str | os.PathLike) -> bool:
    """Whether `path` names a location by URL (`gs://...`) rather than a local path."""
    return url_scheme(path) is not None


def as_path(path: str | os.PathLike) -> AnyPath:
    """A local path (`~` expanded) as `pathlib.Path`, a URL as `epath.Path`. A scheme epath
    cannot reach, or one whose filesystem package is missing, is an error naming the URL."""
    if isinstance(path, epath.Path) and not isinstance(path, Path):
        return path
    text = os.fspath(path)
    scheme = url_scheme(text)
    if scheme is None:
        return Path(text).expanduser()
    if scheme not in BACKENDS:
        raise InputError(f"{text}: unsupported URL scheme {scheme}:// (supported: "
                         f"{', '.join(s + '://' for s in BACKENDS)}, or a local path)")
    module, install = BACKENDS[scheme]
    if importlib.util.find_spec(module) is None:
        raise InputError(f"{text}: reading {scheme}:// needs the {module} package ({install})")
    return epath.Path(text)


def absolute(path: str | os.PathLike) -> AnyPath:
    """`as_path`, made absolute when local (a URL is absolute already)."""
    resolved = as_path(path)
    return resolved.absolute() if isinstance(resolved, Path) else resolved


def move(source: AnyPath, target: AnyPath) -> None:
    """Move a file or a directory to `target` (whose parent may not exist yet)."""
    if isinstance(source, Path) and isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return
    import fsspec

    fs, source_path = fsspec.core.url_to_fs(os.fspath(source))
    fs.mv(source_path, fsspec.core.url_to_fs(os.fspath(target))[1], recursive=True)


def copy(source: AnyPath, target: AnyPath) -> None:
    """Copy one file's bytes, each side local or on a bucket, in 16 MiB blocks."""
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
