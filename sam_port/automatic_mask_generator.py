"""`SamAutomaticMaskGenerator`: SAM's "segment everything" mode, as `segment_anything`'s;
`SAM2AutomaticMaskGenerator`: SAM 2's, as `sam2.automatic_mask_generator`'s.

A grid of single-point prompts over the image (and over crops of it) goes through SAM in
batches; masks are kept by predicted IoU, stability and distance from crop edges, duplicates
are removed by box NMS within each crop and across crops, and optionally small holes and
islands are cleaned up. Same arguments, steps and outputs as the official class.

Each batch is one compiled program (decoder, upscaling to the crop, stability score and box,
all on the device); the last batch of a crop is padded to `points_per_batch`, so a crop size
compiles once. Only the statistics and the masks that survive the filters leave the device.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from sam_port.amg import (
    MaskData,
    area_from_rle,
    batched_mask_to_box,
    batched_nms,
    box_area,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    calculate_stability_score,
    coco_encode_rle,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle,
    remove_small_regions,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from sam_port.compute import predict_masks
from sam_port.config import Sam2Config, SamConfig
from sam_port.loaded import LoadedSam, LoadedSam2
from sam_port.modeling.sam2 import Sam2
from sam_port.predictor import SamPredictor
from sam_port.sam2_predictor import SAM2ImagePredictor, fill_small_regions
from sam_port.transforms import sam2_coords, sam2_postprocess_masks

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


@partial(jax.jit, static_argnames=("config", "input_size", "original_size"))
def score_point_batch(
    config: SamConfig, params: dict, embedding: jax.Array, coords: jax.Array,
    stability_offset: float, *, input_size: tuple[int, int], original_size: tuple[int, int],
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(B, 1, 2) foreground points in the input frame -> for each of the B*M multimask
    outputs (point-major): binary mask at `original_size`, predicted IoU (B, M), stability
    score and XYXY box."""
    labels = jnp.ones(coords.shape[:2], jnp.int32)
    logits, iou, _ = predict_masks(
        config, params, embedding, (coords, labels), None, None, multimask_output=True,
        input_size=input_size, original_size=original_size,
    )
    logits = logits.reshape((-1,) + logits.shape[2:])
    stability = calculate_stability_score(logits, LoadedSam.mask_threshold, stability_offset)
    binary = logits > LoadedSam.mask_threshold
    return binary, iou, stability, batched_mask_to_box(binary)


@jax.jit
def _take(masks: jax.Array, rows: jax.Array) -> jax.Array:
    return jnp.take(masks, rows, axis=0)


def take_rows(masks: jax.Array, rows: np.ndarray) -> np.ndarray:
    """masks[rows] fetched to the host; the index is padded to a power of two so that a few
    compiled gathers serve every count."""
    if len(rows) == 0:
        return np.zeros((0,) + masks.shape[1:], bool)
    padded = np.zeros(1 << int(np.ceil(np.log2(len(rows)))), np.int32)
    padded[: len(rows)] = rows
    return np.asarray(_take(masks, jnp.asarray(padded)))[: len(rows)]


class SamAutomaticMaskGenerator:
    """Generate masks for a whole image with SAM (`segment_anything`'s class and defaults,
    chosen for ViT-H). `progress=True` shows a bar over the point batches of every crop."""

    def __init__(
        self,
        model: LoadedSam,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        *,
        progress: bool = False,
        predictor: Any = None,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("Exactly one of points_per_side or point_grids must be provided.")
        counts = [points_per_batch, crop_n_points_downscale_factor]
        if points_per_side is not None:
            counts.append(points_per_side)
        if crop_n_layers < 0 or min(counts) < 1:
            raise ValueError(
                "points_per_side, points_per_batch and crop_n_points_downscale_factor must be "
                f">= 1 and crop_n_layers >= 0, got {points_per_side}, {points_per_batch}, "
                f"{crop_n_points_downscale_factor} and {crop_n_layers}")
        if points_per_side is not None:
            if int(points_per_side / crop_n_points_downscale_factor**crop_n_layers) < 1:
                raise ValueError(f"points_per_side {points_per_side} leaves no point in crop "
                                 f"layer {crop_n_layers} at downscale factor "
                                 f"{crop_n_points_downscale_factor}")
            self.point_grids = build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            self.point_grids = [np.asarray(grid, np.float64) for grid in point_grids]
        if len(self.point_grids) < crop_n_layers + 1:
            raise ValueError(f"{len(self.point_grids)} point grids for {crop_n_layers + 1} "
                             "crop layers; give one grid per layer")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"Unknown output_mode {output_mode!r}; choose one of {OUTPUT_MODES}")
        self.predictor = predictor if predictor is not None else SamPredictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.progress = progress

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Masks for an HxWx3 uint8 RGB image, as a list of records: `segmentation` (HxW bool,
        or an RLE dict by `output_mode`), `area`, `bbox` (XYWH), `predicted_iou`,
        `point_coords` ([[x, y]]), `stability_score`, `crop_box` (XYWH)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"generate expects an HxWx3 uint8 RGB image, got shape "
                             f"{image.shape} {image.dtype}")
        data = self._clean_small_regions(self._generate_masks(image))
        if self.output_mode == "coco_rle":
            segmentations = [coco_encode_rle(rle) for rle in data["rles"]]
        elif self.output_mode == "binary_mask":
            segmentations = [rle_to_mask(rle) for rle in data["rles"]]
        else:
            segmentations = data["rles"]
        return [
            {
                "segmentation": segmentations[i],
                "area": area_from_rle(data["rles"][i]),
                "bbox": box_xyxy_to_xywh(data["boxes"][i]).tolist(),
                "predicted_iou": float(data["iou_preds"][i]),
                "point_coords": [data["points"][i].tolist()],
                "stability_score": float(data["stability_score"][i]),
                "crop_box": box_xyxy_to_xywh(data["crop_boxes"][i]).tolist(),
            }
            for i in range(len(segmentations))
        ]

    def _clean_small_regions(self, data: MaskData) -> MaskData:
        if self.min_mask_region_area <= 0:
            return data
        return self.postprocess_small_regions(
            data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh))

    def _generate_masks(self, image: np.ndarray) -> MaskData:
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(
            orig_size, self.crop_n_layers, self.crop_overlap_ratio
        )
        batches = sum(-(-len(self.point_grids[layer]) // self.points_per_batch)
                      for layer in layer_idxs)
        data = MaskData()
        with tqdm(total=batches, desc="segment everything", unit="batch",
                  disable=not self.progress) as bar:
            for crop_box, layer_idx in zip(crop_boxes, layer_idxs, strict=True):
                data.cat(self._process_crop(image, crop_box, layer_idx, orig_size, bar))
        if len(crop_boxes) > 1 and len(data["rles"]):
            scores = 1 / box_area(data["crop_boxes"]).astype(np.float32)
            keep = batched_nms(data["boxes"].astype(np.float32), scores,
                               np.zeros(len(data["boxes"])), self.crop_nms_thresh)
            data.filter(keep)
        return data

    def _process_crop(self, image: np.ndarray, crop_box: list[int], crop_layer_idx: int,
                      orig_size: tuple[int, int], bar: tqdm) -> MaskData:
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        cropped_size = cropped.shape[:2]
        self.predictor.set_image(cropped)
        points_for_image = self.point_grids[crop_layer_idx] * np.array(cropped_size)[None, ::-1]
        data = _empty_mask_data()
        pending = None  # one batch in flight: the device computes while the host collects
        for start in range(0, len(points_for_image), self.points_per_batch):
            points = points_for_image[start: start + self.points_per_batch]
            launched = (points, self._launch_batch(points, cropped_size))
            if pending is not None:
                data.cat(self._collect_batch(*pending, crop_box, orig_size))
                bar.update()
            pending = launched
        if pending is not None:
            data.cat(self._collect_batch(*pending, crop_box, orig_size))
            bar.update()
        self._forget_image()

        keep = batched_nms(data["boxes"].astype(np.float32), data["iou_preds"],
                           np.zeros(len(data["boxes"])), self.box_nms_thresh)
        data.filter(keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = np.tile(np.asarray(crop_box, np.int64), (len(data["rles"]), 1))
        return data

    def _forget_image(self) -> None:
        self.predictor.reset_image()

    def _launch_batch(self, points: np.ndarray, im_size: tuple[int, int]) -> tuple:
        """Start one batch on the device (padded to `points_per_batch`); returns its arrays."""
        n = len(points)
        coords = np.empty((self.points_per_batch, 1, 2), np.float32)
        coords[:n, 0] = self.predictor.transform.apply_coords(points, im_size)
        coords[n:] = coords[n - 1]  # pad the last batch: one compiled program per crop size
        model = self.predictor.model
        return score_point_batch(
            model.config, model.params, self.predictor.embedding_nhwc, jnp.asarray(coords),
            self.stability_score_offset, input_size=self.predictor.input_size,
            original_size=tuple(im_size),
        )

    def _collect_batch(self, points: np.ndarray, outputs: tuple, crop_box: list[int],
                       orig_size: tuple[int, int]) -> MaskData:
        """Filter one batch's masks and fetch the survivors, as the official
        `_process_batch` does."""
        orig_h, orig_w = orig_size
        binary, iou, stability, boxes = outputs
        n = len(points)
        per_point = iou.shape[1]
        rows = n * per_point
        iou = np.asarray(iou).reshape(-1)[:rows]
        stability = np.asarray(stability)[:rows]
        boxes = np.asarray(boxes)[:rows].astype(np.int64)

        keep = np.ones(rows, bool)
        if self.pred_iou_thresh > 0.0:
            keep &= iou > self.pred_iou_thresh
        if self.stability_score_thresh > 0.0:
            keep &= stability >= self.stability_score_thresh
        keep &= ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
        kept = np.flatnonzero(keep)
        masks = uncrop_masks(take_rows(binary, kept), crop_box, orig_h, orig_w)
        return MaskData(
            rles=mask_to_rle(masks),
            boxes=boxes[kept],
            iou_preds=iou[kept],
            points=np.repeat(points, per_point, axis=0)[kept],
            stability_score=stability[kept],
        )

    @staticmethod
    def postprocess_small_regions(mask_data: MaskData, min_area: int,
                                  nms_thresh: float) -> MaskData:
        """Fill holes and remove islands smaller than `min_area` in every mask, then rerun
        box NMS preferring the masks that did not change (edits `mask_data` in place)."""
        if len(mask_data["rles"]) == 0:
            return mask_data
        new_masks, scores = [], []
        for rle in mask_data["rles"]:
            mask = rle_to_mask(rle)
            mask, changed = remove_small_regions(mask, min_area, mode="holes")
            unchanged = not changed
            mask, changed = remove_small_regions(mask, min_area, mode="islands")
            new_masks.append(mask)
            scores.append(float(unchanged and not changed))
        masks = np.stack(new_masks)
        boxes = np.asarray(batched_mask_to_box(masks)).astype(np.int64)
        keep = batched_nms(boxes.astype(np.float32), np.asarray(scores, np.float32),
                           np.zeros(len(boxes)), nms_thresh)
        for i in keep:
            if scores[i] == 0.0:
                mask_data["rles"][i] = mask_to_rle(masks[i][None])[0]
                mask_data["boxes"][i] = boxes[i]
        mask_data.filter(keep)
        return mask_data


def _empty_mask_data() -> MaskData:
    return MaskData(rles=[], boxes=np.zeros((0, 4), np.int64), iou_preds=np.zeros(0, np.float32),
                    points=np.zeros((0, 2)), stability_score=np.zeros(0, np.float32))


@partial(jax.jit, static_argnames=("config", "multimask_output", "use_m2m"))
def sam2_decode_point_batch(
    config: Sam2Config, params: dict, embedding: jax.Array,
    high_res: tuple[jax.Array, jax.Array], coords: jax.Array, *, multimask_output: bool,
    use_m2m: bool,
) -> tuple[jax.Array, jax.Array]:
    """(B, 1, 2) foreground points in the input frame -> low-res logits (B*M, h, w) and IoU
    (B*M,), point-major; with `use_m2m`, each mask refined once more by its point and its own
    low-res logits (clamped to +-32 as the predictor returns them) as the mask prompt, single
    mask out (`SAM2AutomaticMaskGenerator.refine_with_m2m`); single masks fall back to the
    best multimask one where unstable, as `build_sam2`'s decoder does."""
    labels = jnp.ones(coords.shape[:2], jnp.int32)
    model, variables = Sam2(config), {"params": params}
    out = model.apply(variables, embedding, high_res, (coords, labels), None, multimask_output,
                      True, method=Sam2.predict_from_embeddings)
    per_point = out.masks.shape[1]
    low_res = out.masks.reshape((-1,) + out.masks.shape[2:])
    iou = out.iou.reshape(-1)
    if use_m2m:
        points = jnp.repeat(coords, per_point, axis=0)
        mask_input = jnp.clip(low_res, -32.0, 32.0)[..., None]
        out = model.apply(variables, embedding, high_res, (points, jnp.ones_like(labels)
                                                           .repeat(per_point, axis=0)),
                          mask_input, False, True, method=Sam2.predict_from_embeddings)
        low_res, iou = out.masks[:, 0], out.iou[:, 0]
    return low_res, iou


@partial(jax.jit, static_argnames=("original_size",))
def score_sam2_masks(low_res: jax.Array, mask_threshold: float, stability_offset: float, *,
                     original_size: tuple[int, int]
                     ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Low-res logits (N, h, w) -> binary masks at `original_size`, stability scores and
    XYXY boxes."""
    logits = sam2_postprocess_masks(low_res[:, None], original_size)[:, 0]
    stability = calculate_stability_score(logits, mask_threshold, stability_offset)
    binary = logits > mask_threshold
    return binary, stability, batched_mask_to_box(binary)


class SAM2AutomaticMaskGenerator(SamAutomaticMaskGenerator):
    """Generate masks for a whole image with SAM 2 (`sam2.automatic_mask_generator`'s class
    and defaults): SAM's steps with SAM 2's predictor, its `mask_threshold`, an optional
    multimask-free grid (`multimask_output=False`) and one mask-to-mask refinement step
    (`use_m2m`). `min_mask_region_area` is SAM 2's: holes and sprinkles of up to that many
    pixels are filled in the low-res logits before upscaling, as its predictor does (the
    official runs that through its CUDA extension and skips it, with a warning, without)."""

    def __init__(
        self,
        model: LoadedSam2,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        *,
        progress: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model, points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh,
            stability_score_offset, box_nms_thresh, crop_n_layers, crop_nms_thresh,
            crop_overlap_ratio, crop_n_points_downscale_factor, point_grids,
            min_mask_region_area, output_mode, progress=progress,
            predictor=SAM2ImagePredictor(model, max_hole_area=min_mask_region_area,
                                         max_sprinkle_area=min_mask_region_area))
        self.mask_threshold = mask_threshold
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output

    def _clean_small_regions(self, data: MaskData) -> MaskData:
        return data  # done in the low-res logits of each batch (see the class docstring)

    def _forget_image(self) -> None:
        self.predictor.reset_predictor()

    def _launch_batch(self, points: np.ndarray, im_size: tuple[int, int]) -> tuple:
        n = len(points)
        coords = np.empty((self.points_per_batch, 1, 2), np.float32)
        coords[:n, 0] = sam2_coords(points, im_size, self.predictor.model.image_size)
        coords[n:] = coords[n - 1]  # padded as SAM's: one compiled program per crop size
        model, features = self.predictor.model, self.predictor._features
        low_res, iou = sam2_decode_point_batch(
            model.config, model.params, features["image_embed"],
            tuple(features["high_res_feats"]), jnp.asarray(coords),
            multimask_output=self.multimask_output, use_m2m=self.use_m2m)
        if self.predictor.max_hole_area > 0 or self.predictor.max_sprinkle_area > 0:
            low_res = jnp.asarray(fill_small_regions(
                np.asarray(low_res)[:, None], self.mask_threshold, self.predictor.max_hole_area,
                self.predictor.max_sprinkle_area)[:, 0])
        binary, stability, boxes = score_sam2_masks(
            low_res, self.mask_threshold, self.stability_score_offset,
            original_size=tuple(im_size))
        return binary, iou.reshape(self.points_per_batch, -1), stability, boxes
