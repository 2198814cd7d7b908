"""`LoadedSam` and `LoadedSam2`: a SAM or SAM 2 ready to run, with the official model
object's interface.

Besides our fields (model type, config, parameters) it answers what user code asks of the
official `Sam`: `sam.to(device)` and `sam.eval()` (no-ops returning the model: JAX places
arrays itself), `sam.device`, `sam.image_encoder.img_size`, `sam.mask_threshold`,
`sam.image_format`, and the end-to-end call `sam(batched_input, multimask_output)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from sam_port.compute import batched_prompts, embed_images, predict_masks
from sam_port.config import ImageEncoderConfig, Sam2Config, SamConfig
from sam_port.host_array import host
from sam_port.modeling.sam import Sam
from sam_port.modeling.sam2 import Sam2
from sam_port.transforms import preprocess_nchw


def _device(params: dict) -> jax.Device:
    """The device holding `params` (JAX's default device before first use)."""
    leaf = jax.tree.leaves(params)[0]
    devices = getattr(leaf, "devices", None)
    return next(iter(devices())) if devices is not None else jax.devices()[0]


@dataclasses.dataclass
class LoadedSam:
    """A SAM ready to run: its architecture, the Flax module and the parameters."""

    model_type: str
    config: SamConfig
    params: dict

    mask_threshold: ClassVar[float] = Sam.mask_threshold
    image_format: ClassVar[str] = "RGB"

    @property
    def module(self) -> Sam:
        return Sam(self.config)

    @property
    def variables(self) -> dict:
        return {"params": self.params}

    @property
    def image_encoder(self) -> ImageEncoderConfig:
        """The image encoder's architecture (`sam.image_encoder.img_size` as officially)."""
        return self.config.image_encoder

    @property
    def device(self) -> jax.Device:
        """The device holding the parameters (JAX's default device before first use)."""
        return _device(self.params)

    def to(self, *args: Any, **kwargs: Any) -> LoadedSam:
        """A no-op returning the model, for `sam.to(device=...)`: JAX puts arrays on its
        default device (`jax.device_put(sam.params, device)` moves them)."""
        return self

    def eval(self) -> LoadedSam:
        """A no-op returning the model: SAM has no train-time behaviour here."""
        return self

    def __call__(self, batched_input: list[dict[str, Any]],
                 multimask_output: bool) -> list[dict[str, np.ndarray]]:
        """`Sam.forward`: images already resized (each 'image' (3, h, w) with its
        'original_size' (H, W)) and optional 'point_coords' (B, N, 2) + 'point_labels' (B, N),
        'boxes' (B, 4), 'mask_inputs' (B, 1, 256, 256), all in the resized frame. Returns per
        image 'masks' (B, C, H, W) bool, 'iou_predictions' (B, C), 'low_res_logits'
        (B, C, 256, 256), as `HostArray`s (numpy, with `.cpu()` / `.numpy()`)."""
        if not batched_input:
            return []
        images = [np.asarray(record["image"]) for record in batched_input]
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f"batched_input[{i}]['image'] must be (3, H, W), got shape "
                                 f"{image.shape}")
        pixels = np.concatenate([preprocess_nchw(image[None], self.config) for image in images])
        embeddings = embed_images(self.config, self.params, jnp.asarray(pixels))
        outputs = []
        for i, (record, image) in enumerate(zip(batched_input, images, strict=True)):
            points, boxes, mask = batched_prompts(
                record.get("point_coords"), record.get("point_labels"), record.get("boxes"),
                record.get("mask_inputs"), self.config.low_res_size,
            )
            masks, iou, low_res = predict_masks(
                self.config, self.params, embeddings[i: i + 1], points, boxes, mask,
                multimask_output=multimask_output, input_size=tuple(image.shape[-2:]),
                original_size=tuple(int(v) for v in record["original_size"]),
            )
            outputs.append({"masks": host(masks > self.mask_threshold),
                            "iou_predictions": host(iou), "low_res_logits": host(low_res)})
        return outputs


@dataclasses.dataclass
class LoadedSam2:
    """A SAM 2 image model ready to run (`SAM2ImagePredictor(loaded)`); answers what user code
    asks of the official `SAM2Base`: `image_size`, `device`, `to(...)`, `eval()`."""

    model_type: str
    config: Sam2Config
    params: dict

    mask_threshold: ClassVar[float] = Sam2.mask_threshold

    @property
    def module(self) -> Sam2:
        return Sam2(self.config)

    @property
    def variables(self) -> dict:
        return {"params": self.params}

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def device(self) -> jax.Device:
        return _device(self.params)

    def to(self, *args: Any, **kwargs: Any) -> LoadedSam2:
        """A no-op returning the model (JAX places arrays itself)."""
        return self

    def eval(self) -> LoadedSam2:
        """A no-op returning the model."""
        return self


def require_sam2(model: Any, who: str) -> LoadedSam2:
    """`model` if it is a loaded SAM 2, else the TypeError that says what `who` takes."""
    if not isinstance(model, LoadedSam2):
        raise TypeError(f"{who} takes a SAM 2 model (sam_port.load_sam of a sam2*.pt file), "
                        f"got {type(model).__name__}")
    return model
