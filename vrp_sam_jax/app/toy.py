"""The app without a model given: the toy VRP-SAM that `vrp-sam demo` trains (trained on the
spot when there is none), and a toy example to try it on (a novel category's reference with
its mask, and targets that hold the category)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from vrp_sam_jax import model_io
from vrp_sam_jax.config import load_config
from vrp_sam_jax.data import splits, toy
from vrp_sam_jax.models import LoadedModel
from vrp_sam_jax.training import run_dir
from vrp_sam_jax.training.trainer import train

EXAMPLE_CATEGORY = 0  # a novel category of fold 0, the fold `vrp-sam demo` trains
EXAMPLE_TARGETS = 4


def is_toy(model: LoadedModel) -> bool:
    """Whether the model is one of the tiny test/demo architectures (no real images)."""
    return model.config.sam_type == "tiny"


def toy_model(workdir: str | Path, progress: bool = True) -> LoadedModel:
    """The toy model of `workdir` (the demo's work directory, `demo_out/run`): training is
    finished there first when it is not (from scratch, or resumed), with progress shown."""
    workdir = Path(workdir)
    config = run_dir.read_config(workdir) if run_dir.is_run_dir(workdir) else load_config("toy")
    print(f"vrp-sam app: no --vrp-checkpoint given; the toy model in {workdir} (training it "
          "first where it is not finished: a minute or two on a CPU)", file=sys.stderr)
    train(config, workdir, progress=progress)
    return model_io.load(workdir)


def example(folder: str | Path) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """(reference image, its object mask, target files written under `folder`) for the
    toy's novel category EXAMPLE_CATEGORY, from the validation images."""
    names = toy.classwise("val")[EXAMPLE_CATEGORY]
    image, label = toy.render(names[0])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    targets = []
    for name in names[1 : 1 + EXAMPLE_TARGETS]:
        path = folder / f"toy_{name.replace('/', '_')}.png"
        Image.fromarray(toy.render(name)[0]).save(path)
        targets.append(path)
    return image, label == EXAMPLE_CATEGORY + 1, targets


def example_class() -> str:
    return splits.class_name("toy", EXAMPLE_CATEGORY)
