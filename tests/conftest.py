"""Test set-up shared by every test module.

`segment_anything/__init__.py` imports torchvision, for two things only: the automatic mask
generator's NMS and `ResizeLongestSide.apply_image`, which calls
`torchvision.transforms.functional.resize(to_pil_image(image), (h, w))`. On a PIL image that
resize is `image.resize((w, h), PIL.Image.BILINEAR)` (torchvision's `_functional_pil.resize`).
PyPI's torchvision does not import beside the CPU torch wheel the test extra pins, so when
torchvision is missing we register a stand-in with exactly that PIL call, and `batched_nms` /
`box_area` written in plain torch with torchvision's rules (for the official automatic mask
generator), and the three tensor transforms SAM 2's predictor scripts
(tests/torchvision_transforms.py). With a real torchvision installed, the real one is used.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _start_compile_cache() -> Path | None:
    """One JAX persistent compilation cache for the whole test session, set in the environment
    before JAX is imported, so that this process and every `vrp-sam` subprocess the tests start
    (they inherit `os.environ`) share it: the toy model's steps, compiled by dozens of trainings,
    evaluations and predictions in and out of process, compile once. Every program is cached,
    however fast its compilation or small its executable (CPU programs are both).

    Returns the directory to delete at the session's end, or None where the developer's own
    `JAX_COMPILATION_CACHE_DIR` is used (kept, so that runs after the first reuse it)."""
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    directory = Path(tempfile.mkdtemp(prefix="vrp_sam_tests_jax_cache_"))
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(directory)
    return directory


_OWN_COMPILE_CACHE = _start_compile_cache()
_CACHE_EVENTS: dict[str, float] = {}


def _count_cache_event(event: str, **_) -> None:
    if event.startswith("/jax/compilation_cache/"):
        _CACHE_EVENTS[event] = _CACHE_EVENTS.get(event, 0) + 1


def _add_cache_duration(event: str, seconds: float, **_) -> None:
    if event.startswith("/jax/compilation_cache/"):
        _CACHE_EVENTS[event] = _CACHE_EVENTS.get(event, 0) + seconds


def pytest_configure(config) -> None:
    import jax

    assert jax.config.jax_compilation_cache_dir == os.environ["JAX_COMPILATION_CACHE_DIR"], (
        "JAX was imported before tests/conftest.py set its compilation cache")
    jax.monitoring.register_event_listener(_count_cache_event)
    jax.monitoring.register_event_duration_secs_listener(_add_cache_duration)


def pytest_terminal_summary(terminalreporter) -> None:
    """What the persistent compilation cache holds (written by every process of the session)
    and, where this process compiled anything (not an xdist controller), how often it read
    the cache instead."""
    directory = Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    entries = [f for f in directory.iterdir() if f.is_file()] if directory.is_dir() else []
    size = sum(f.stat().st_size for f in entries)
    line = (f"JAX compilation cache {directory}: {len(entries)} programs "
            f"({size / 2**20:.0f} MiB) from all processes")
    hits = int(_CACHE_EVENTS.get("/jax/compilation_cache/cache_hits", 0))
    misses = int(_CACHE_EVENTS.get("/jax/compilation_cache/cache_misses", 0))
    if hits or misses:
        saved = _CACHE_EVENTS.get("/jax/compilation_cache/compile_time_saved_sec", 0.0)
        line += (f"; in this process {hits} read ({saved:.0f} s of compilation saved), "
                 f"{misses} compiled and written")
    terminalreporter.write_line(line)


def pytest_unconfigure(config) -> None:
    if _OWN_COMPILE_CACHE is not None:
        shutil.rmtree(_OWN_COMPILE_CACHE, ignore_errors=True)


# The test files that take longest (`--durations`, 2026-12-05, 2 CPU cores), longest first.
# They run first, so that the README's two xdist workers (`-n 2`, each file whole in one
# worker, in this order: pyproject's `--dist loadfile --no-loadscope-reorder`) end together
# instead of one of them finishing a long file alone.
LONGEST_FIRST = ("test_training.py", "test_multiprocess.py", "test_sam_parity.py",
                 "test_buckets.py", "test_app.py", "test_vrp_parity.py", "test_model_io.py",
                 "test_evaluation.py", "test_sam2_parity.py", "test_amg.py", "test_ablations.py",
                 "test_plan.py", "test_notebook.py")


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


def _install_torchvision_stand_in() -> None:
    if importlib.util.find_spec("torchvision") is not None:
        return
    from PIL import Image

    def to_pil_image(pic):
        return Image.fromarray(pic)

    def resize(img, size, interpolation=None, max_size=None, antialias=True):
        if not isinstance(img, Image.Image) or len(size) != 2:
            raise NotImplementedError("stand-in covers resize(PIL image, (h, w)) only")
        return img.resize((int(size[1]), int(size[0])), Image.BILINEAR)

    def box_area(boxes):
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def batched_nms(boxes, scores, idxs, iou_threshold):
        """torchvision's greedy NMS within each category (stable descending score order, IoU
        strictly above the threshold suppresses), in plain torch."""
        import torch

        keep = []
        for category in torch.unique(idxs):
            members = torch.nonzero(idxs == category).flatten()
            order = members[torch.sort(scores[members], descending=True, stable=True)[1]]
            b = boxes[order].float()
            lo = torch.maximum(b[:, None, :2], b[None, :, :2])
            hi = torch.minimum(b[:, None, 2:], b[None, :, 2:])
            inter = (hi - lo).clamp(min=0).prod(-1)
            area = box_area(b)
            over = inter / (area[:, None] + area[None, :] - inter) > iou_threshold
            suppressed = torch.zeros(len(b), dtype=torch.bool)
            for i in range(len(b)):
                if not suppressed[i]:
                    keep.append(order[i])
                    suppressed |= over[i]
        if not keep:
            return torch.zeros(0, dtype=torch.int64)
        keep = torch.stack(keep)
        return keep[torch.sort(scores[keep], descending=True, stable=True)[1]]

    tv = types.ModuleType("torchvision")
    ops, boxes = types.ModuleType("torchvision.ops"), types.ModuleType("torchvision.ops.boxes")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    boxes.batched_nms, boxes.box_area = batched_nms, box_area
    functional.resize, functional.to_pil_image = resize, to_pil_image

    def transform_class(name: str):  # SAM 2's transforms, loaded when asked for (torch)
        if name not in ("ToTensor", "Resize", "Normalize"):
            raise AttributeError(name)
        return getattr(importlib.import_module("torchvision_transforms"), name)

    transforms.__getattr__ = transform_class
    tv.ops, ops.boxes, tv.transforms, transforms.functional = ops, boxes, transforms, functional
    sys.modules.update({
        "torchvision": tv, "torchvision.ops": ops, "torchvision.ops.boxes": boxes,
        "torchvision.transforms": transforms, "torchvision.transforms.functional": functional,
    })


_install_torchvision_stand_in()


def _built_once(tmp_path_factory, name: str, build) -> Path:
    """`build(folder)`'s folder, built by the first of the session's processes to ask (the
    README's `-n 2` runs two xdist workers, each its own pytest session; both find the folder
    in the base directory they share, under a lock the builder holds until it is done).
    Readers must not write in it. A build that failed is started again by the next to ask."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' base directories are siblings
    folder, done = root / name, root / f"{name}.built"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or its holder dies
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """A toy work directory trained for a few steps (`vrp-sam train --config toy`), shared by
    the evaluation, model-source and notebook tests."""
    from commands import SMALL_TOY_TRAINING

    from vrp_sam_jax.cli import main

    def build(workdir: Path) -> None:
        assert main(["train", "--config", "toy", "--workdir", str(workdir), "--quiet",
                     *SMALL_TOY_TRAINING, "--config.data.val_episodes=8"]) == 0

    return _built_once(tmp_path_factory, "toy_run", build)


@pytest.fixture(scope="session")
def two_process_run(tmp_path_factory) -> Path:
    """The toy training of tests/pod_runs.py in 2 processes x 4 CPU devices (one shared
    embedding cache): the run test_multiprocess.py compares with one process, a killed and
    resumed pair and a two-process evaluation, and test_buckets.py with the same run on a
    bucket."""
    from pod_runs import train_two_processes

    return _built_once(tmp_path_factory, "two_process_run", train_two_processes) / "run"


def _official_sam(tmp_path_factory, model_type: str):
    import torch
    from torch_sam import build_torch_sam

    import sam_port

    model = build_torch_sam(sam_port.get_config(model_type), seed=7)
    path = tmp_path_factory.mktemp(f"{model_type}_sam") / f"sam_{model_type}.pth"
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory):
    """(path, model): the official PyTorch SAM at our tiny config with random weights
    (tests/torch_sam.py), `torch.save`d once for the session in the official checkpoint's
    layout. Shared: a test that writes beside it, or changes the model, takes a copy."""
    return _official_sam(tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def toy_sam2(tmp_path_factory):
    """(path, model): the official SAM 2 (`sam2` 1.1.0) at our toy config with random weights
    (tests/torch_sam2.py), saved once for the session as the official `.pt` files are."""
    from torch_sam2 import build_torch_sam2, save_official_checkpoint

    import sam_port

    model = build_torch_sam2(sam_port.get_sam2_config("sam2.1_toy"), seed=5)
    path = tmp_path_factory.mktemp("toy_sam2") / "sam2.1_toy.pt"
    return save_official_checkpoint(model, path), model


@pytest.fixture(scope="session")
def vit_b_sam(tmp_path_factory):
    """(path, model): as `tiny_sam`, at ViT-B, for the few checks where full size is the
    point (built once: 90 M parameters, 360 MB on disk)."""
    return _official_sam(tmp_path_factory, "vit_b")
