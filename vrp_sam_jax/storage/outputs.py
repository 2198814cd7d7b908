"""Where a command's outputs for given input files go (`predict`, `sam-everything`): a name per
input that no other input's outputs share, a writable output directory, and a refusal, before
any work, of an output that would replace an input or (without --overwrite) any file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from vrp_sam_jax.errors import InputError

OUTPUTS = ("{}.png", "{}_overlay.png", "{}_logits.npy")


def output_names(paths: Sequence[str | Path]) -> list[str]:
    """An output name per target, its file stem, numbered (x_2, x_3, ...) where any of its
    files (`OUTPUTS`) would be another target's: a/x.png and b/x.png, or a target named
    x_overlay.png beside x.png, never overwrite each other."""
    taken: set[str] = set()
    names = []
    for p in paths:
        stem, n, name = Path(p).stem, 1, Path(p).stem
        while any(f.format(name) in taken for f in OUTPUTS):
            n += 1
            name = f"{stem}_{n}"
        taken.update(f.format(name) for f in OUTPUTS)
        names.append(name)
    return names


def output_dir(path: str | Path, create: bool = True) -> Path:
    """`path` as a writable directory (created when `create`), or an InputError saying why
    not; `create=False` only checks, writing nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a directory")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{path}: the output directory is not writable ({existing})")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{path}: cannot create the output directory ({e.strerror})"
                             ) from e
    return path


def output_files(targets: Sequence[str | Path], out: Path, save_logits: bool
                 ) -> list[list[Path]]:
    """Per target, the files `predict_files` writes for it under `out`."""
    return [[out / f.format(name) for f in OUTPUTS[: 3 if save_logits else 2]]
            for name in output_names(targets)]


def check_outputs(targets: Sequence[str | Path], out: str | Path, save_logits: bool,
                  inputs: Sequence[str | Path] = (), overwrite: bool = False) -> None:
    """Refuse, before any work, an output that would replace a target or another input
    (never allowed) or a file already there (only with `overwrite`): a run of
    `predict_files` writes no file it did not make."""
    existing = [p for files in output_files(targets, Path(out), save_logits) for p in files
                if p.exists()]
    for path in existing:
        for given in [*targets, *inputs]:
            if Path(given).exists() and os.path.samefile(path, given):
                raise InputError(f"{path}: the output would replace the input {given}; "
                                 "choose another --output-dir")
    if existing and not overwrite:
        raise InputError(f"{existing[0]}: exists already (and {len(existing) - 1} other "
                         "outputs); choose another --output-dir, or give --overwrite to "
                         "replace them")
