"""Scalars (also echoed to stderr) and images to TensorBoard event files (tensorboardX: no
TensorFlow needed), from the first process only."""

from __future__ import annotations

import json
import sys

from vrp_sam_jax.runtime import processes
from vrp_sam_jax.storage.paths import AnyPath, as_path


def _summary_writer_class() -> type:
    """tensorboardX's SummaryWriter, imported without PyTorch where PyTorch is installed but
    not yet imported: tensorboardX's writer module imports torch only to accept its tensors
    (we log floats and numpy arrays), and that import costs every run about a second of its
    start-up. A `None` in `sys.modules` makes `import torch` fail for the duration."""
    if "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


class MetricLogger:
    def __init__(self, workdir: str | AnyPath, echo: bool = True):
        self.active = processes.is_writer()
        self.echo = echo
        self.writer = None
        if self.active:
            self.writer = _summary_writer_class()(str(as_path(workdir) / "tensorboard"))

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
