"""VRP-SAM for people's own images: encode references once, segment any number of targets.

    model = vrp_sam_jax.load("runs/pascal_f0")          # or a converted dir, best_model.pt
    predictor = VRPSamPredictor(model)
    predictor.set_references([image], [prompt_mask])      # prompt masks on the model grid
    mask, logits = predictor.predict(target_image)         # mask at the target's own size
    for mask, logits in predictor.predict_many(targets, batch_size=8):  # batched
        ...

Targets of any size share one compiled program per batch size: they are resized to the
model grid on the host and the logits are resized back there. `predict_files` does this for
image files and writes each target's mask, overlay and (optionally) logits.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from itertools import islice
from pathlib import Path

import jax
import numpy as np
from PIL import Image
from tqdm import tqdm

from vrp_sam_jax.errors import InputError
from vrp_sam_jax.models import LoadedModel, Reference, VRPSam, VRPSamConfig, gp_sam
from vrp_sam_jax.names import METHODS
from vrp_sam_jax.runtime.sharding import one_in_flight, pad_rows
from vrp_sam_jax.storage.files import write_atomic
from vrp_sam_jax.storage.image_io import overlay, read_image, require_files, write_mask
from vrp_sam_jax.storage.outputs import check_outputs, output_dir, output_files
from vrp_sam_jax.transforms.preprocess import logits_to_size, prepare_image


@partial(jax.jit, static_argnums=0)
def encode_reference(model_config: VRPSamConfig, params: dict, images: jax.Array,
                     prompt_masks: jax.Array) -> Reference:
    """Normalised references (B, K, S, S, 3) and their prompt masks (B, K, S, S) -> the
    encoded `Reference`, computed once and reused for every target."""
    model = VRPSam(model_config)
    return model.apply({"params": params}, images, prompt_masks, method=model.encode_reference)


@partial(jax.jit, static_argnums=0)
def predict_logits(model_config: VRPSamConfig, params: dict, reference: Reference,
                   targets: jax.Array) -> jax.Array:
    """Normalised targets (B, S, S, 3) -> logits (B, S, S), one reference set for all."""
    model = VRPSam(model_config)
    variables = {"params": params}
    target = model.apply(variables, targets, method=model.encode_target)
    prompts = model.apply(variables, reference, target, method=model.prompts)
    embeddings = model.apply(variables, targets, method=model.embed_targets)
    return model.apply(variables, embeddings, prompts, method=model.decode)


class VRPSamPredictor:
    """Encode k reference images with their prompt masks once; segment any number of
    targets with them. `method="gp-sam"` prompts SAM with GP-SAM's points and/or box
    (`models.gp_sam`; the model needs no trained encoder), drawn with a key per target
    (`seed`, the target's number in this predictor's stream)."""

    def __init__(self, model: LoadedModel, method: str = "vrp", gp_prompts: str = "box+point",
                 gp_threshold: float = gp_sam.THRESHOLD, seed: int = 0):
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        self.model, self.method, self.seed = model, method, seed
        self.gp = (gp_prompts, float(gp_threshold))
        self.reference: Reference | tuple | None = None
        self._targets_seen = 0

    @property
    def size(self) -> int:
        return self.model.config.image_size

    def set_references(self, images: list[np.ndarray], prompt_masks: list[np.ndarray]) -> None:
        """images: HxWx3 uint8 (any size); prompt_masks: (S, S) {0, 1} on the model grid
        (see `vrp_sam_jax.transforms.conditions`). Several references make the prediction k-shot."""
        if not images or len(images) != len(prompt_masks):
            raise InputError("give one prompt mask per reference image (at least one)")
        for i, m in enumerate(prompt_masks):
            if m.shape != (self.size, self.size):
                raise InputError(f"reference {i}: prompt mask is {m.shape}, expected "
                                 f"({self.size}, {self.size})")
            if not np.any(m):
                raise InputError(f"reference {i}: empty reference annotation")
        batch = np.stack([prepare_image(im, self.size) for im in images])[None]
        masks = np.stack(prompt_masks).astype(np.float32)[None]
        encode = gp_sam.encode_reference if self.method == "gp-sam" else encode_reference
        self.reference = encode(self.model.config, self.model.params, batch, masks)
        self._targets_seen = 0

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HxWx3 uint8 target -> (bool mask (H, W), logits (S, S))."""
        return next(self.predict_many([image], batch_size=1))

    def predict_many(self, images: Iterable[np.ndarray], batch_size: int = 8
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(bool mask (H, W), logits (S, S)) for each HxWx3 uint8 target, in order, computed
        `batch_size` targets per call (a short last batch is padded, so one compiled program
        serves every batch). The next batch is prepared on the host while the device runs
        the current one; `images` is consumed lazily."""
        if self.reference is None:
            raise RuntimeError("call set_references() before predict()")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        targets = iter(images)
        chunks = iter(lambda: list(islice(targets, batch_size)), [])
        for chunk, logits in one_in_flight(chunks, lambda c: self._dispatch(c, batch_size)):
            for image, row in zip(chunk, np.asarray(logits), strict=False):  # drops padding
                yield logits_to_size(row, *image.shape[:2]) > 0, row

    def _dispatch(self, chunk: list[np.ndarray], batch_size: int) -> jax.Array:
        """Start the logits of `chunk` padded to `batch_size` rows (asynchronously)."""
        batch = pad_rows(np.stack([prepare_image(im, self.size) for im in chunk]), batch_size)
        if self.method == "vrp":
            return predict_logits(self.model.config, self.model.params, self.reference, batch)
        index = np.arange(self._targets_seen, self._targets_seen + batch_size, dtype=np.int32)
        self._targets_seen += len(chunk)
        return gp_sam.gp_sam_logits(self.model.config, *self.gp, self.model.params,
                                    self.reference, batch, gp_sam.row_keys(index, self.seed))


def predict_files(predictor: VRPSamPredictor, targets: Sequence[str | Path],
                  output_dir_path: str | Path, batch_size: int = 8, save_logits: bool = False,
                  progress: bool = True, inputs: Sequence[str | Path] = (),
                  overwrite: bool = False) -> list[dict]:
    """Segment image files with the predictor's references: `NAME.png` (the mask at the
    target's displayed size), `NAME_overlay.png` and, with `save_logits`, `NAME_logits.npy`
    (model grid) under `output_dir_path`, each written whole or not at all. No output may
    replace a target or another of `inputs`, nor, without `overwrite`, any existing file.
    Targets are read lazily, at most two batches held."""
    require_files(targets)  # fail before any work on a missing target
    check_outputs(targets, output_dir_path, save_logits, inputs, overwrite)
    out = output_dir(output_dir_path)
    read: collections.deque = collections.deque()  # images read, not yet written out

    def images():
        for p in targets:
            read.append(read_image(p))
            yield read[-1]

    # a batch never holds more targets than there are
    results = predictor.predict_many(images(), min(batch_size, len(targets)))
    written = []
    for path, files, (mask, logits) in tqdm(
            zip(targets, output_files(targets, out, save_logits), results, strict=True),
            total=len(targets), desc="targets", unit="image", disable=not progress or None):
        image = read.popleft()
        mask_path = files[0]
        write_atomic(mask_path, lambda p, m=mask: write_mask(p, m))
        write_atomic(files[1],
                     lambda p, i=image, m=mask: Image.fromarray(overlay(i, m)).save(p))
        if save_logits:
            write_atomic(files[2], lambda p, x=logits: np.save(p, x))
        written.append({"target": str(path), "mask": str(mask_path),
                        "foreground": round(float(mask.mean()), 4)})
    return written
