"""Scalars (also echoed to stderr) and images to TensorBoard event files (tensorboardX: no
TensorFlow needed), from the first process only."""

from __future__ import annotations

import json
import sys

from vrp_sam_jax import processes
from vrp_sam_jax.paths import AnyPath, as_path


class MetricLogger:
    def __init__(self, workdir: str | AnyPath, echo: bool = True):
        self.active = processes.is_writer()
        self.echo = echo
        self.writer = None
        if self.active:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(as_path(workdir) / "tensorboard"))

    def write(self, step: int, scalars: dict[str, float], prefix: str = "") -> None:
        if not self.active:
            return
        for key, value in scalars.items():
            self.writer.add_scalar(f"{prefix}{key}", float(value), step)
        self.writer.flush()
        if self.echo:
            line = {"step": step, **{f"{prefix}{k}": round(float(v), 6)
                                     for k, v in scalars.items()}}
            print(json.dumps(line), file=sys.stderr, flush=True)

    def write_image(self, step: int, tag: str, image) -> None:
        """An (H, W, 3) uint8 image as a TensorBoard image panel."""
        if self.active:
            self.writer.add_image(tag, image, step, dataformats="HWC")
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
