"""`SAM2VideoPredictor`: the official SAM 2 video predictor's interface on the Flax port
(`sam2/sam2_video_predictor.py` and the tracking of `sam2/modeling/sam2_base.py`; same
method names, arguments, state and numbers), as `build_sam2_video_predictor` sets it up:
a single mask falls back to the best multimask one where unstable, prompted frames enter the
memory binarised, holes of up to 8 low-res pixels are filled.

    predictor = SAM2VideoPredictor(sam_port.load_sam("sam2.1_hiera_tiny.pt"))
    state = predictor.init_state("video_frames/")           # or a video file, or arrays
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=[[210, 350]],
                                    labels=[1])
    for frame_idx, obj_ids, mask_logits in predictor.propagate_in_video(state):
        ...                                                 # (objects, 1, H, W) numpy

The per-frame computations are compiled once per kind of step (`sam_port.compute`); which
frames a step remembers (the prompted frames, the 6 before it, 15 object pointers) is
decided here on the host and passed as fixed-size slots, so every tracked frame reuses one
program. Frames are read and embedded when visited (the last one's features are kept, as
officially); `propagate_in_video(..., trim_memory=True)` also forgets outputs that no later
frame of the pass can attend to, so memory stays bounded on long videos.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from sam_port.compute import (
    resize_logits,
    sam2_encode_new_memory,
    sam2_frame_features,
    sam2_mask_as_output,
    sam2_track_frame,
)
from sam_port.interpolate import antialiased_linear_weights
from sam_port.loaded import LoadedSam2, require_sam2
from sam_port.modeling.sam2 import NO_OBJ_SCORE, Memory
from sam_port.sam2_predictor import small_components
from sam_port.video_frames import VideoFrames

# `SAM2Base`'s tracking settings, the same in every official SAM 2 and 2.1 config
MAX_OBJ_PTRS_IN_ENCODER = 16
MEMORY_TEMPORAL_STRIDE = 1  # `memory_temporal_stride_for_eval`
MULTIMASK_MAX_POINTS = 1  # multimask output for 0 or 1 prompt points (a box counts as 2)
FILL_HOLE_AREA = 8  # `build_sam2_video_predictor`'s `fill_hole_area`
HOLE_FILL_LOGIT = 0.1  # `fill_holes_in_mask_scores` turns holes into this score
PREV_LOGITS_CLAMP = 32.0


def fill_holes(logits: np.ndarray, max_area: float) -> np.ndarray:
    """`fill_holes_in_mask_scores`: background components (logits <= 0) of at most `max_area`
    pixels of each (H, W) map of (B, 1, H, W) get the score 0.1."""
    out = np.array(logits, np.float32)
    for index in np.ndindex(*out.shape[:2]):
        out[index][small_components(out[index] <= 0, max_area)] = HOLE_FILL_LOGIT
    return out


def non_overlapping(logits: np.ndarray) -> np.ndarray:
    """`_apply_non_overlapping_constraints` on (objects, 1, H, W): at each pixel only the
    highest-scoring object keeps its score, the others are clamped to at most -10."""
    if logits.shape[0] == 1:
        return logits
    keep = np.argmax(logits, axis=0)[None] == np.arange(logits.shape[0])[:, None, None, None]
    return np.where(keep, logits, np.minimum(logits, -10.0)).astype(np.float32)


def resize_mask_antialiased(mask: np.ndarray, size: int) -> np.ndarray:
    """A {0, 1} (H, W) mask -> (size, size) float32, `F.interpolate(bilinear, antialias=True)`
    as `add_new_mask` resizes it (widths first, as PyTorch's separable kernel)."""
    wy = antialiased_linear_weights(mask.shape[0], size)
    wx = antialiased_linear_weights(mask.shape[1], size)
    return (wy @ (mask.astype(np.float32) @ wx.T)).astype(np.float32)


def _storage_key(is_cond: bool) -> str:
    return "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"


class SAM2VideoPredictor:
    """Prompt objects on frames of a video, then follow them through it."""

    def __init__(self, sam_model: LoadedSam2, fill_hole_area: float = FILL_HOLE_AREA,
                 non_overlap_masks: bool = False,
                 add_all_frames_to_correct_as_cond: bool = False) -> None:
        self.model = require_sam2(sam_model, "SAM2VideoPredictor")
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def num_maskmem(self) -> int:
        return self.model.config.num_maskmem

    # --- the state ------------------------------------------------------------------------
    def init_state(self, video_path: str | Path | Sequence[np.ndarray] | VideoFrames,
                   offload_video_to_cpu: bool = False, offload_state_to_cpu: bool = False,
                   async_loading_frames: bool = False) -> dict[str, Any]:
        """A new inference state for a video: a folder of frames, a video file, a sequence
        of HxWx3 uint8 arrays or `VideoFrames`. The offload / async options are accepted for
        the official signature; frames are always read when visited."""
        frames = video_path if isinstance(video_path, VideoFrames) else VideoFrames(video_path)
        state: dict[str, Any] = {
            "images": frames,
            "num_frames": len(frames),
            "video_height": frames.height,
            "video_width": frames.width,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }
        self._get_image_feature(state, 0)
        return state

    def reset_state(self, inference_state: dict[str, Any]) -> None:
        """Remove every prompt, result and object of the state (the video stays)."""
        for key in ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj",
                    "temp_output_dict_per_obj", "frames_tracked_per_obj", "obj_id_to_idx",
                    "obj_idx_to_id"):
            inference_state[key].clear()
        inference_state["obj_ids"] = []

    def _obj_id_to_idx(self, state: dict[str, Any], obj_id: Any) -> int:
        """The object's slot, made on first use (new objects are allowed at any time)."""
        if obj_id in state["obj_id_to_idx"]:
            return state["obj_id_to_idx"][obj_id]
        obj_idx = len(state["obj_id_to_idx"])
        state["obj_id_to_idx"][obj_id] = obj_idx
        state["obj_idx_to_id"][obj_idx] = obj_id
        state["obj_ids"] = list(state["obj_id_to_idx"])
        state["point_inputs_per_obj"][obj_idx] = {}
        state["mask_inputs_per_obj"][obj_idx] = {}
        for key in ("output_dict_per_obj", "temp_output_dict_per_obj"):
            state[key][obj_idx] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        state["frames_tracked_per_obj"][obj_idx] = {}
        return obj_idx

    # --- prompts --------------------------------------------------------------------------
    def add_new_points_or_box(
        self, inference_state: dict[str, Any], frame_idx: int, obj_id: Any,
        points: Any = None, labels: Any = None, clear_old_points: bool = True,
        normalize_coords: bool = True, box: Any = None,
    ) -> tuple[int, list, np.ndarray]:
        """Points (N, 2) xy with labels (N,) (1 foreground, 0 background) and/or a box (4,)
        xyxy, in video pixels (or [0, 1] with `normalize_coords=False`), on a frame for an
        object -> (frame_idx, obj_ids, mask logits of every object (O, 1, H, W))."""
        state = inference_state
        self._check_frame(state, frame_idx)
        if (points is not None) != (labels is not None):
            raise ValueError("points and labels must be provided together")
        if points is None and box is None:
            raise ValueError("at least one of points or box must be provided as input")
        obj_idx = self._obj_id_to_idx(state, obj_id)
        coords = np.zeros((1, 0, 2), np.float32) if points is None else \
            np.asarray(points, np.float32).reshape(1, -1, 2)
        point_labels = np.zeros((1, 0), np.int32) if labels is None else \
            np.asarray(labels, np.int32).reshape(1, -1)
        if point_labels.shape[1] != coords.shape[1]:
            raise ValueError(f"{coords.shape[1]} points but {point_labels.shape[1]} labels")
        if box is not None:
            if not clear_old_points:
                raise ValueError("cannot add box without clearing old points, since box prompt "
                                 "must be provided before any point prompt (please use "
                                 "clear_old_points=True instead)")
            coords = np.concatenate([np.asarray(box, np.float32).reshape(1, 2, 2), coords], 1)
            point_labels = np.concatenate([np.asarray([[2, 3]], np.int32), point_labels], 1)
        if normalize_coords:
            coords = coords / np.asarray([state["video_width"], state["video_height"]],
                                         np.float32)
        coords = (coords * np.float32(self.image_size)).astype(np.float32)
        old = None if clear_old_points else state["point_inputs_per_obj"][obj_idx].get(frame_idx)
        if old is not None:
            coords = np.concatenate([old["point_coords"], coords], axis=1)
            point_labels = np.concatenate([old["point_labels"], point_labels], axis=1)
        point_inputs = {"point_coords": coords, "point_labels": point_labels}
        state["point_inputs_per_obj"][obj_idx][frame_idx] = point_inputs
        state["mask_inputs_per_obj"][obj_idx].pop(frame_idx, None)
        is_init, reverse, is_cond = self._frame_role(state, obj_idx, frame_idx)
        # the object's latest logits on this frame join the new clicks as the mask prompt
        prev = self._newest_output(state, obj_idx, frame_idx, is_cond)
        prev_logits = None
        if prev is not None and prev["pred_masks"] is not None:
            prev_logits = np.clip(prev["pred_masks"], -PREV_LOGITS_CLAMP, PREV_LOGITS_CLAMP)
        current, _ = self._run_single_frame_inference(
            state, state["output_dict_per_obj"][obj_idx], frame_idx, is_init, point_inputs,
            None, reverse, run_mem_encoder=False, prev_sam_mask_logits=prev_logits)
        state["temp_output_dict_per_obj"][obj_idx][_storage_key(is_cond)][frame_idx] = current
        return frame_idx, state["obj_ids"], self._frame_masks(state, frame_idx, is_cond)

    def add_new_points(self, *args: Any, **kwargs: Any) -> tuple[int, list, np.ndarray]:
        """Deprecated officially: `add_new_points_or_box`."""
        return self.add_new_points_or_box(*args, **kwargs)

    def add_new_mask(self, inference_state: dict[str, Any], frame_idx: int, obj_id: Any,
                     mask: Any) -> tuple[int, list, np.ndarray]:
        """A mask (H, W) (bool or {0, 1}, any size; resized to the model's input) on a frame
        for an object -> (frame_idx, obj_ids, mask logits of every object (O, 1, H, W))."""
        state = inference_state
        self._check_frame(state, frame_idx)
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"the mask must be 2-D (H, W), got shape {mask.shape}")
        obj_idx = self._obj_id_to_idx(state, obj_id)
        mask = mask.astype(bool).astype(np.float32)
        size = self.image_size
        if mask.shape != (size, size):
            mask = (resize_mask_antialiased(mask, size) >= 0.5).astype(np.float32)
        state["mask_inputs_per_obj"][obj_idx][frame_idx] = mask
        state["point_inputs_per_obj"][obj_idx].pop(frame_idx, None)
        is_init, reverse, is_cond = self._frame_role(state, obj_idx, frame_idx)
        current, _ = self._run_single_frame_inference(
            state, state["output_dict_per_obj"][obj_idx], frame_idx, is_init, None, mask,
            reverse, run_mem_encoder=False)
        state["temp_output_dict_per_obj"][obj_idx][_storage_key(is_cond)][frame_idx] = current
        return frame_idx, state["obj_ids"], self._frame_masks(state, frame_idx, is_cond)

    def _frame_role(self, state: dict[str, Any], obj_idx: int, frame_idx: int
                    ) -> tuple[bool, bool, bool]:
        """(an initial conditioning frame: not tracked yet; the direction it was tracked in;
        whether its prompt makes it a conditioning frame)."""
        tracked = state["frames_tracked_per_obj"][obj_idx]
        is_init = frame_idx not in tracked
        reverse = False if is_init else tracked[frame_idx]["reverse"]
        return is_init, reverse, is_init or self.add_all_frames_to_correct_as_cond

    def _check_frame(self, state: dict[str, Any], frame_idx: int) -> None:
        if not 0 <= frame_idx < state["num_frames"]:
            raise ValueError(f"frame_idx {frame_idx} is outside the video's "
                             f"{state['num_frames']} frames")

    def _frame_masks(self, state: dict[str, Any], frame_idx: int, is_cond: bool) -> np.ndarray:
        """`_consolidate_temp_output_across_obj(consolidate_at_video_res=True)`: every
        object's newest logits on the frame at the video's size (NO_OBJ_SCORE for an object
        without any)."""
        height, width = state["video_height"], state["video_width"]
        masks = np.full((len(state["obj_idx_to_id"]), 1, height, width), NO_OBJ_SCORE,
                        np.float32)
        for obj_idx in range(masks.shape[0]):
            out = self._newest_output(state, obj_idx, frame_idx, is_cond)
            if out is not None:
                masks[obj_idx] = self._video_size(state, out["pred_masks"])[0]
        return non_overlapping(masks) if self.non_overlap_masks else masks

    def _newest_output(self, state: dict[str, Any], obj_idx: int, frame_idx: int,
                       is_cond: bool) -> dict[str, Any] | None:
        """The object's newest output on the frame: the temporary one of a prompt not yet
        propagated (in the `is_cond` store), else the tracked conditioning or other one."""
        outputs = state["output_dict_per_obj"][obj_idx]
        return (state["temp_output_dict_per_obj"][obj_idx][_storage_key(is_cond)]
                .get(frame_idx) or outputs["cond_frame_outputs"].get(frame_idx)
                or outputs["non_cond_frame_outputs"].get(frame_idx))

    def _video_size(self, state: dict[str, Any], low_res: np.ndarray) -> np.ndarray:
        size = (state["video_height"], state["video_width"])
        return np.asarray(resize_logits(jnp.asarray(low_res), size))

    # --- tracking -------------------------------------------------------------------------
    def propagate_in_video_preflight(self, inference_state: dict[str, Any]) -> None:
        """Encode the memories of the frames just prompted (their masks binarised) and move
        them from the temporary outputs into the tracking outputs."""
        state = inference_state
        if not state["obj_idx_to_id"]:
            raise RuntimeError("No input points or masks are provided for any object; please "
                               "add inputs first.")
        for obj_idx in range(len(state["obj_idx_to_id"])):
            outputs = state["output_dict_per_obj"][obj_idx]
            temporary = state["temp_output_dict_per_obj"][obj_idx]
            for is_cond in (False, True):
                key = _storage_key(is_cond)
                for frame_idx, out in temporary[key].items():
                    if out["maskmem_features"] is None:
                        features, _ = self._get_image_feature(state, frame_idx)
                        out["maskmem_features"] = sam2_encode_new_memory(
                            self.model.config, self.model.params, features,
                            jnp.asarray(out["pred_masks"]), out["object_score_logits"],
                            binarize=True)
                    outputs[key][frame_idx] = out
                temporary[key].clear()
            if not outputs["cond_frame_outputs"]:
                raise RuntimeError(f"No input points or masks are provided for object id "
                                   f"{state['obj_idx_to_id'][obj_idx]}; please add inputs "
                                   f"first.")
            for frame_idx in outputs["cond_frame_outputs"]:
                outputs["non_cond_frame_outputs"].pop(frame_idx, None)

    def propagate_in_video(self, inference_state: dict[str, Any],
                           start_frame_idx: int | None = None,
                           max_frame_num_to_track: int | None = None, reverse: bool = False,
                           trim_memory: bool = False, progress: bool = True
                           ) -> Iterator[tuple[int, list, np.ndarray]]:
        """Follow every object from `start_frame_idx` (default: the first prompted frame)
        forwards (or with `reverse` backwards) -> (frame_idx, obj_ids, mask logits
        (O, 1, H, W)) per frame. `trim_memory` (not official) drops each object's outputs
        of frames the rest of this pass cannot attend to (its masks were yielded)."""
        state = inference_state
        self.propagate_in_video_preflight(state)
        num_frames, num_objects = state["num_frames"], len(state["obj_idx_to_id"])
        if start_frame_idx is None:
            start_frame_idx = min(t for outputs in state["output_dict_per_obj"].values()
                                  for t in outputs["cond_frame_outputs"])
        if max_frame_num_to_track is None:
            max_frame_num_to_track = num_frames
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + max_frame_num_to_track, num_frames - 1)
            order = range(start_frame_idx, end + 1)
        for frame_idx in tqdm(order, desc="propagate in video", disable=not progress or None):
            per_object = []
            for obj_idx in range(num_objects):
                outputs = state["output_dict_per_obj"][obj_idx]
                if frame_idx in outputs["cond_frame_outputs"]:
                    masks = outputs["cond_frame_outputs"][frame_idx]["pred_masks"]
                else:
                    current, masks = self._run_single_frame_inference(
                        state, outputs, frame_idx, False, None, None, reverse,
                        run_mem_encoder=True)
                    outputs["non_cond_frame_outputs"][frame_idx] = current
                state["frames_tracked_per_obj"][obj_idx][frame_idx] = {"reverse": reverse}
                per_object.append(masks)
                if trim_memory:
                    self._forget_before(outputs, frame_idx, reverse)
            video_masks = self._video_size(state, np.concatenate(per_object, axis=0))
            if self.non_overlap_masks:
                video_masks = non_overlapping(video_masks)
            yield frame_idx, state["obj_ids"], video_masks

    def _forget_before(self, outputs: dict[str, dict], frame_idx: int, reverse: bool) -> None:
        """Drop non-conditioning outputs no later frame of this pass reaches: the memory
        looks back (num_maskmem - 1) strides, the pointers 15 frames."""
        reach = max((self.num_maskmem - 1) * MEMORY_TEMPORAL_STRIDE,
                    MAX_OBJ_PTRS_IN_ENCODER - 1)
        stale = [t for t in outputs["non_cond_frame_outputs"]
                 if (t - frame_idx if reverse else frame_idx - t) >= reach]
        for t in stale:
            del outputs["non_cond_frame_outputs"][t]

    def _get_image_feature(self, state: dict[str, Any], frame_idx: int
                           ) -> tuple[Any, tuple[Any, Any]]:
        """The frame's raw top-level and high-res features; the last frame's are kept."""
        cached = state["cached_features"].get(frame_idx)
        if cached is None:
            config = self.model.config
            pixels = state["images"].prepared(frame_idx, config.image_size, config.pixel_mean,
                                              config.pixel_std)
            cached = sam2_frame_features(config, self.model.params, jnp.asarray(pixels)[None])
            state["cached_features"] = {frame_idx: cached}
        return cached

    def _run_single_frame_inference(
        self, state: dict[str, Any], output_dict: dict[str, dict], frame_idx: int,
        is_init_cond_frame: bool, point_inputs: dict | None, mask_inputs: np.ndarray | None,
        reverse: bool, run_mem_encoder: bool, prev_sam_mask_logits: np.ndarray | None = None,
    ) -> tuple[dict[str, Any], np.ndarray]:
        """One object's step on one frame -> (its stored output, its low-res logits
        (1, 1, 4h, 4w) after hole filling)."""
        config, params = self.model.config, self.model.params
        features, high_res = self._get_image_feature(state, frame_idx)
        memory_features = None
        if mask_inputs is not None:
            out = sam2_mask_as_output(config, params, features, high_res,
                                      jnp.asarray(mask_inputs)[None, :, :, None])
        else:
            points = None
            if point_inputs is not None:
                points = (jnp.asarray(point_inputs["point_coords"]),
                          jnp.asarray(point_inputs["point_labels"]))
            num_points = 0 if point_inputs is None else point_inputs["point_labels"].shape[1]
            memory = None if is_init_cond_frame else self._memory(
                state, output_dict, frame_idx, reverse)
            prompt = None if prev_sam_mask_logits is None else \
                jnp.asarray(prev_sam_mask_logits).transpose(0, 2, 3, 1)
            out, memory_features = sam2_track_frame(
                config, params, features, high_res, memory, points, prompt,
                multimask_output=num_points <= MULTIMASK_MAX_POINTS,
                encode_memory=run_mem_encoder, binarize=point_inputs is not None)
        masks = np.asarray(out.low_res_masks, np.float32)
        if self.fill_hole_area > 0:
            masks = fill_holes(masks, self.fill_hole_area)
        return {"maskmem_features": memory_features, "pred_masks": masks,
                "obj_ptr": out.obj_ptr, "object_score_logits": out.object_score_logits}, masks

    def _memory(self, state: dict[str, Any], output_dict: dict[str, dict], frame_idx: int,
                reverse: bool) -> Memory:
        """`_prepare_memory_conditioned_features`' choice of what a frame attends to, as
        fixed-size slots: every conditioning frame (`max_cond_frames_in_attn` is -1 in the
        official configs) at t_pos 0, then the (num_maskmem - 1) frames before it (after it
        in reverse) at t_pos 1 (oldest) to num_maskmem - 1; the object pointers of the
        conditioning frames not in the future and of up to 15 frames before it, each with
        its signed distance over the largest possible."""
        cond = output_dict["cond_frame_outputs"]
        recent = output_dict["non_cond_frame_outputs"]
        step = 1 if reverse else -1  # towards the frames already tracked
        stride = MEMORY_TEMPORAL_STRIDE
        frames = [(0, out) for out in cond.values()]
        for t_pos in range(1, self.num_maskmem):
            t_rel = self.num_maskmem - t_pos
            if t_rel == 1:
                prev = frame_idx + step
            elif reverse:
                prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
            else:
                prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
            frames.append((t_pos, recent.get(prev)))
        num_frames = state["num_frames"]
        max_pointers = min(num_frames, MAX_OBJ_PTRS_IN_ENCODER)
        # signed: the distance from the frame towards the frames already tracked
        pointers = [((t - frame_idx) * step, out["obj_ptr"]) for t, out in cond.items()
                    if (t >= frame_idx if reverse else t <= frame_idx)]
        pointer_slots = len(cond) + MAX_OBJ_PTRS_IN_ENCODER - 1
        for t_diff in range(1, max_pointers):
            t = frame_idx + t_diff * step
            if t < 0 or t >= num_frames:
                break
            out = recent.get(t)
            if out is not None:
                pointers.append((t_diff, out["obj_ptr"]))
        return self._memory_slots(frames, pointers, pointer_slots, max(max_pointers - 1, 1))

    def _memory_slots(self, frames: list[tuple[int, dict | None]],
                      pointers: list[tuple[int, Any]], pointer_slots: int,
                      t_diff_max: int) -> Memory:
        cfg = self.model.config
        s = cfg.embedding_size
        empty = jnp.zeros((1, s, s, cfg.mem_dim), jnp.bfloat16)
        features = jnp.stack([empty if out is None else out["maskmem_features"]
                              for _, out in frames], axis=1)
        frame_tpos = np.asarray([t_pos for t_pos, _ in frames], np.int32)
        frame_valid = np.asarray([out is not None for _, out in frames])
        padding = pointer_slots - len(pointers)
        vectors = [ptr for _, ptr in pointers] + [jnp.zeros((1, cfg.d_model))] * padding
        distances = np.asarray([d for d, _ in pointers] + [0] * padding, np.float32)
        return Memory(features, jnp.asarray(frame_tpos), jnp.asarray(frame_valid),
                      jnp.stack(vectors, axis=1),
                      jnp.asarray(distances / np.float32(t_diff_max)),
                      jnp.asarray(np.arange(pointer_slots) < len(pointers)))
