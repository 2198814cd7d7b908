"""VRP-SAM for people's own images: load weights, encode references once, segment targets.

    model = load_model("sam_vit_h_4b8939.pth", "vit_h", "best_model.pt", "resnet50")
    predictor = VRPSamPredictor(model)
    predictor.set_references([image], [prompt_mask])      # prompt masks on the 512 grid
    mask, logits = predictor.predict(target_image)         # mask at the target's own size
    for mask, logits in predictor.predict_many(targets, batch_size=8):  # batched
        ...

Targets of any size share one compiled program per batch size: they are resized to the
model grid on the host and the logits are resized back there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import islice
from pathlib import Path

import jax
import numpy as np

import sam_port
from sam_port.interpolate import linear_weights
from sam_port.torch_pickle import CheckpointError
from vrp_sam_jax.checkpoints import load_vrp
from vrp_sam_jax.data.pipeline import pad_rows
from vrp_sam_jax.dispatch import one_in_flight
from vrp_sam_jax.image_io import InputError
from vrp_sam_jax.models import Reference, VRPSam, VRPSamConfig
from vrp_sam_jax.preprocess import prepare_image


@dataclasses.dataclass
class LoadedVRPSam:
    config: VRPSamConfig
    params: dict  # {"backbone", "encoder", "sam"}


def load_model(sam_path: str | Path, sam_type: str | None, vrp_path: str | Path,
               backbone: str | None, compute_dtype: str = "float32") -> LoadedVRPSam:
    """SAM (official .pth or converted directory) + VRP weights (release `best_model.pt` or
    converted directory), checked against each other. `compute_dtype` "bfloat16" runs the
    frozen backbone and SAM image encoder in bf16 (see `VRPSamConfig`)."""
    vrp = load_vrp(vrp_path, backbone)
    sam = sam_port.load_sam(sam_path, sam_type)
    if sam.config.prompt_embed_dim != vrp.hidden_dim:
        raise CheckpointError(
            f"{vrp_path}: VRP prompts are {vrp.hidden_dim}-d but the SAM in {sam_path} "
            f"({sam.model_type}) takes {sam.config.prompt_embed_dim}-d prompts")
    config = VRPSamConfig(vrp.backbone, sam.model_type, num_queries=vrp.num_queries,
                          compute_dtype=compute_dtype)
    return LoadedVRPSam(config, {**vrp.params, "sam": sam.params})


@partial(jax.jit, static_argnums=0)
def encode_reference(config: VRPSamConfig, params: dict, images: jax.Array,
                     prompt_masks: jax.Array) -> Reference:
    model = VRPSam(config)
    return model.apply({"params": params}, images, prompt_masks, method=model.encode_reference)


@partial(jax.jit, static_argnums=0)
def predict_logits(config: VRPSamConfig, params: dict, reference: Reference,
                   targets: jax.Array) -> jax.Array:
    """Normalised targets (B, S, S, 3) -> logits (B, S, S), one reference set for all."""
    model = VRPSam(config)
    variables = {"params": params}
    target = model.apply(variables, targets, method=model.encode_target)
    prompts = model.apply(variables, reference, target, method=model.prompts)
    embeddings = model.apply(variables, targets, method=model.embed_targets)
    return model.apply(variables, embeddings, prompts, method=model.decode)


def logits_to_size(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """(S, S) logits -> (height, width), bilinear with align_corners=True (the release's
    original-size path), in numpy so targets of any size share one compiled model."""
    wy = linear_weights(logits.shape[0], height, True)
    wx = linear_weights(logits.shape[1], width, True)
    return (wy @ np.asarray(logits, np.float32) @ wx.T).astype(np.float32)


class VRPSamPredictor:
    """Encode k reference images with their prompt masks once; segment any number of
    targets with them."""

    def __init__(self, model: LoadedVRPSam):
        self.model = model
        self.reference: Reference | None = None

    @property
    def size(self) -> int:
        return self.model.config.image_size

    def set_references(self, images: list[np.ndarray], prompt_masks: list[np.ndarray]) -> None:
        """images: HxWx3 uint8 (any size); prompt_masks: (S, S) {0, 1} on the model grid
        (see `vrp_sam_jax.conditions`). Several references make the prediction k-shot."""
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
        self.reference = encode_reference(self.model.config, self.model.params, batch, masks)

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
        return predict_logits(self.model.config, self.model.params, self.reference, batch)
