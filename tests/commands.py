"""The `vrp-sam predict` command line the tests build again and again, in one place."""

from __future__ import annotations

from pathlib import Path


def predict_argv(vrp: Path, sam: Path | None, out: Path, *args: str) -> list[str]:
    """`vrp-sam predict`'s arguments (for `cli.main`): the VRP checkpoint, SAM's when given
    (otherwise the model's own), the output folder, then `args` (reference, targets, flags)."""
    return ["predict", "--vrp-checkpoint", str(vrp),
            *(["--sam-checkpoint", str(sam)] if sam is not None else []),
            "--output-dir", str(out), *args]
