"""Writing a file or folder whole, parsing a metadata file's JSON, telling a URL from a local
path: the one place both packages do each (imports point down, so they live here;
`vrp_sam_jax.storage.files` and `vrp_sam_jax.storage.paths` build on them)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def replacing(path: str | Path, directory: bool = False) -> Iterator[Path]:
    """A new temporary file (or, with `directory`, folder) beside `path` for the block to
    write; renamed to `path` when the block ends, removed if it raises (a full disk, a kill
    signal's KeyboardInterrupt). The name is this call's own (created exclusively, with a
    random part), so no file of anyone else's is ever truncated or deleted; it keeps `path`'s
    suffix for writers that pick the format from it. A folder replaces only an empty `path`
    folder (the caller decides what happens to a full one)."""
    path = Path(path)
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial{path.suffix}")
        try:
            if directory:
                temporary.mkdir()
            else:
                os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield temporary
        if directory and path.is_dir():
            path.rmdir()  # only an empty folder: OSError otherwise
        os.replace(temporary, path)
    except BaseException as error:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno is not None and (
                not error.filename or str(error.filename).startswith(str(temporary))):
            # a full disk in the middle of a write names no file, or our removed temporary
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise


def parse_json(data: bytes | str, label: str, what: str, error: type[Exception]) -> Any:
    """The JSON value in `data` (the bytes of the file `label`), or `error` in one line: not
    JSON, not UTF-8, or nested deeper than Python's parser goes."""
    try:
        return json.loads(data)
    except RecursionError:
        raise error(f"{label}: unreadable {what} (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise error(f"{label}: unreadable {what} ({e})") from None


_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def url_scheme(path: str | os.PathLike) -> str | None:
    """The scheme of a URL (`gs` for `gs://bucket/run`), None for a local path: the one rule
    both packages use to tell the two apart."""
    match = _URL.match(os.fspath(path))
    return None if match is None else match.group(1)
