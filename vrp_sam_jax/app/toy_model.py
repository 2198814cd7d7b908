"""The app without a model given: the toy VRP-SAM that `vrp-sam demo` trains (trained in the
background while the page is served, when there is none), and a toy example to try it on (a
novel category's reference with its mask, and targets that hold the category)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ml_collections
import numpy as np
from PIL import Image

from vrp_sam_jax import model_io
from vrp_sam_jax.config import load_config
from vrp_sam_jax.data import splits, toy_benchmark
from vrp_sam_jax.errors import EXPECTED_ERRORS, InputError
from vrp_sam_jax.models import LoadedModel
from vrp_sam_jax.storage.image_io import read_image
from vrp_sam_jax.training import run_dir
from vrp_sam_jax.training.trainer import train

EXAMPLE_CATEGORY = 0  # a novel category of fold 0, the fold `vrp-sam demo` trains
EXAMPLE_TARGETS = 4


def is_toy(model: LoadedModel) -> bool:
    """Whether the model is one of the tiny test/demo architectures (no real images)."""
    return model.config.sam_type == "tiny"


def toy_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The config the toy model of `workdir` trains with: the run's own where there is one,
    else the embedded toy config."""
    workdir = Path(workdir)
    return run_dir.read_config(workdir) if run_dir.is_run_dir(workdir) else load_config("toy")


class Preparation:
    """The toy model of a work directory made ready in a background thread while the page is
    served: its training finished there first where it is not (from scratch, or resumed), then
    the model loaded and handed to `finish`. `status()` says how far it is, `result()` gives
    what `finish` returned once ready."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | Path,
                 finish: Callable[[LoadedModel], object], progress: bool = True):
        self.config, self.workdir = config, Path(workdir)
        self.size = int(config.model.image_size)
        self._finish, self._progress = finish, progress
        self._step: tuple[int, int] | None = None
        self._result = self._error = None
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._prepare, name="toy model", daemon=True)

    def start(self) -> Preparation:
        self._thread.start()
        return self

    def _on_step(self, step: int, total: int) -> None:
        self._step = (step, total)

    def _prepare(self) -> None:
        try:
            train(self.config, self.workdir, progress=self._progress, on_step=self._on_step)
            self._result = self._finish(model_io.load(self.workdir))
        except EXPECTED_ERRORS as e:
            self._error = str(e)
        except Exception as e:  # noqa: BLE001 - shown on the page, and below in the terminal
            self._error = f"{type(e).__name__}: {e}"
            raise

    def ready(self) -> bool:
        return self._result is not None

    def done(self) -> bool:
        """Ready, or failed (the error is in `status()`)."""
        return self._result is not None or self._error is not None

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def status(self) -> str:
        """One line for the page: what is being done, with progress, or the error."""
        if self._error is not None:
            return f"**Error:** the toy model could not be prepared: {self._error}"
        if self._result is not None:
            return f"The toy model is ready ({self.workdir})."
        elapsed = time.monotonic() - self._started
        doing = ("setting up (initialising and compiling)" if self._step is None
                 else f"training step {self._step[0]} of {self._step[1]}")
        return (f"**Preparing the toy model** in {self.workdir} (once; a few minutes on a "
                f"CPU): {doing}, {elapsed:.0f} s so far. Segmenting is enabled when it is "
                "ready; meanwhile, load the example and annotate.")

    def result(self) -> object:
        """What `finish` returned; an InputError saying how far it is while not ready."""
        if self._result is None:
            raise InputError(self.status().replace("**", ""))
        return self._result


def example(folder: str | Path) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """(reference image, its object mask, target files written under `folder`) for the
    toy's novel category EXAMPLE_CATEGORY, from the validation images."""
    names = toy_benchmark.classwise("val")[EXAMPLE_CATEGORY]
    image, label = toy_benchmark.render(names[0])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    targets = []
    for name in names[1 : 1 + EXAMPLE_TARGETS]:
        path = folder / f"toy_{name.replace('/', '_')}.png"
        Image.fromarray(toy_benchmark.render(name)[0]).save(path)
        targets.append(path)
    return image, label == EXAMPLE_CATEGORY + 1, targets


def example_truth(path: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(its pixels HxWx3 uint8, its object mask (H, W) bool) for a target `example` wrote
    (recognised by its name and pixels, wherever it was copied), else None: the page shows
    the mask beside the prediction."""
    match = re.fullmatch(r"toy_(train|val)_(\d+)\.png", Path(path).name)
    if match is None:
        return None
    image, label = toy_benchmark.render(f"{match[1]}/{match[2]}")
    try:
        same = np.array_equal(read_image(path), image)
    except EXPECTED_ERRORS:
        return None
    return (image, label == EXAMPLE_CATEGORY + 1) if same else None


def example_class() -> str:
    return splits.class_name("toy", EXAMPLE_CATEGORY)
