"""Command lines the tests build again and again, in one place."""

from __future__ import annotations

from pathlib import Path


def predict_argv(vrp: Path, sam: Path | None, out: Path, *args: str) -> list[str]:
    """`vrp-sam predict`'s arguments (for `cli.main`): the VRP checkpoint, SAM's when given
    (otherwise the model's own), the output folder, then `args` (reference, targets, flags)."""
    return ["predict", "--vrp-checkpoint", str(vrp),
            *(["--sam-checkpoint", str(sam)] if sam is not None else []),
            "--output-dir", str(out), *args]


# The small toy training (configs/toy.py at 64 pixels, 4 steps) of the session's `toy_run`, the
# demo test and the damaged-checkpoint test: one configuration (a schedule's length is part of
# the compiled step), so each after the first reads its programs from the session's compilation
# cache.
SMALL_TOY_TRAINING = ["--config.model.image_size=64", "--config.train.epochs=1",
                      "--config.train.steps_per_epoch=4"]
