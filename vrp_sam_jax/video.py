"""A reference that follows its object through a video: VRP-SAM on SAM 2 finds the object on
a frame from the annotated reference(s), SAM 2's memory tracks it from there.

    model = vrp_sam_jax.load("runs/pascal_sam2")            # VRP-SAM with a SAM 2 segmenter
    tracker = VRPSamVideoPredictor(model)
    tracker.set_references([image], [prompt_mask])
    for frame_idx, mask, source in tracker.track("clip.mp4"):   # or a folder of frames
        ...                                  # mask (H, W) bool; source: how it was found

The first frame where the reference finds the object (VRP-SAM's mask, exactly what
`VRPSamPredictor.predict` gives on that frame) is given to SAM 2 as a mask prompt
(`SAM2VideoPredictor.add_new_mask`), and `propagate_in_video` carries it forward: memory
encoder, memory attention, object pointers. Frames before it are those where the reference
found nothing. With `reprompt`, a frame where the tracked object is lost is shown to the
reference again; if it finds the object there, that mask becomes a new conditioning frame
(as a correction does with `add_all_frames_to_correct_as_cond`) and tracking resumes from
it. Frames are read one at a time and old memories are forgotten (`trim_memory`), so a long
video needs no more memory than a short one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sam_port.files import replacing
from sam_port.loaded import LoadedSam2
from sam_port.sam2_video_predictor import SAM2VideoPredictor
from sam_port.video_frames import VideoFrames
from vrp_sam_jax.errors import InputError
from vrp_sam_jax.inference import VRPSamPredictor
from vrp_sam_jax.models import LoadedModel
from vrp_sam_jax.storage.files import write_atomic
from vrp_sam_jax.storage.image_io import overlay, write_mask
from vrp_sam_jax.storage.outputs import output_dir

OBJ_ID = 1
# how a frame's mask was found (`track`'s third value)
FOUND_BY_REFERENCE, TRACKED, NOT_FOUND = "reference", "tracked", "not found"


class VRPSamVideoPredictor:
    """Reference-prompted video segmentation with a VRP-SAM whose segmenter is SAM 2."""

    def __init__(self, model: LoadedModel, reprompt: bool = False):
        if not model.config.sam2:
            raise InputError(f"following a reference through a video needs VRP-SAM on SAM 2 "
                             f"(model.sam_type sam2.1_*); this model's segmenter is "
                             f"{model.config.sam_type}")
        self.images = VRPSamPredictor(model)
        sam2 = LoadedSam2(model.config.sam_type, model.config.sam, model.params["sam"])
        # a re-prompted frame was tracked already: it must still become a conditioning frame
        self.tracker = SAM2VideoPredictor(sam2, add_all_frames_to_correct_as_cond=True)
        self.reprompt = reprompt

    def set_references(self, images: list[np.ndarray], prompt_masks: list[np.ndarray]) -> None:
        """As `VRPSamPredictor.set_references`: HxWx3 uint8 images, (S, S) prompt masks."""
        self.images.set_references(images, prompt_masks)

    def track(self, video: str | Path | Sequence[np.ndarray] | VideoFrames,
              progress: bool = True) -> Iterator[tuple[int, np.ndarray, str]]:
        """(frame index, mask (H, W) bool, how it was found) for every frame in order."""
        frames = video if isinstance(video, VideoFrames) else VideoFrames(video)
        start = None
        for index in range(len(frames)):
            mask = self.images.predict(frames.frame(index))[0]
            if mask.any():
                start = index
                break
            yield index, mask, NOT_FOUND
        if start is None:
            return
        state = self.tracker.init_state(frames)
        while start is not None:
            self.tracker.add_new_mask(state, start, OBJ_ID, mask)
            yield start, mask, FOUND_BY_REFERENCE
            resume, start = start, None
            for index, _, logits in self.tracker.propagate_in_video(
                    state, start_frame_idx=resume, trim_memory=True, progress=progress):
                if index == resume:
                    continue  # the reference's own mask, given above
                tracked = logits[0, 0] > 0
                if self.reprompt and not tracked.any():
                    mask = self.images.predict(frames.frame(index))[0]
                    if mask.any():
                        start = index
                        break
                yield index, tracked, TRACKED


def segment_video(tracker: VRPSamVideoPredictor, video: str | Path, output_dir_path: str | Path,
                  overlay_video: bool = True, fps: float | None = None,
                  overwrite: bool = False, progress: bool = True) -> dict:
    """Follow the tracker's reference through `video` (a frame folder or a video file),
    writing `masks/<frame>.png` (black/white, the frame's size, each file whole) and, with
    `overlay_video`, `overlay.mp4` (the frames with the mask drawn; written beside and
    renamed when complete) under `output_dir_path`. Frames are read, segmented and written
    one at a time. -> a summary: frames, the frames the reference prompted, the files."""
    frames = VideoFrames(video)
    check_video_outputs(output_dir_path, overlay_video, overwrite)
    out = output_dir(output_dir_path)
    masks_dir, overlay_path = out / "masks", out / "overlay.mp4"
    digits = max(5, len(str(len(frames) - 1)))
    mask_paths = [masks_dir / f"{i:0{digits}d}.png" for i in range(len(frames))]
    writer = _overlay_writer(overlay_path, fps or frames.fps or DEFAULT_FPS) \
        if overlay_video else contextlib.nullcontext()
    masks_dir.mkdir(exist_ok=True)
    prompted, found = [], 0
    with writer as append:
        for index, mask, source in tqdm(tracker.track(frames, progress=False),
                                        total=len(frames), desc="frames", unit="frame",
                                        disable=not progress or None):
            write_atomic(mask_paths[index], lambda p, m=mask: write_mask(p, m))
            if append is not None:
                append(overlay(frames.frame(index), mask))
            prompted += [index] if source == FOUND_BY_REFERENCE else []
            found += int(bool(mask.any()))
    frames.close()
    return {"frames": len(frames), "prompted_frames": prompted, "frames_with_object": found,
            "masks": str(masks_dir), "overlay": str(overlay_path) if overlay_video else None}


DEFAULT_FPS = 24.0  # a frame folder's rate, unless given


def check_video_outputs(output_dir_path: str | Path, overlay_video: bool = True,
                        overwrite: bool = False) -> None:
    """Refuse, before any work, outputs of an earlier run in the directory (masks in
    `masks/`, `overlay.mp4`) unless `overwrite` (which replaces the masks of this video's
    frames and the overlay)."""
    out = Path(output_dir_path)
    earlier = sorted((out / "masks").glob("*.png"))[:1]
    if overlay_video and (out / "overlay.mp4").exists():
        earlier.append(out / "overlay.mp4")
    if earlier and not overwrite:
        raise InputError(f"{earlier[0]}: already exists (pass --overwrite to replace the "
                         f"outputs in {out})")


@contextlib.contextmanager
def _overlay_writer(path: Path, fps: float) -> Iterator:
    """An H.264 MP4 written frame by frame (imageio's ffmpeg), renamed to `path` when whole;
    yields `append(frame)`."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise InputError("writing the overlay video needs imageio and imageio-ffmpeg "
                         "(pip install 'vrp-sam-jax[video]'), or pass --no-overlay") from None
    with replacing(path) as temporary:
        # even sides for H.264's 4:2:0 (imageio pads by resizing to a multiple of 2)
        writer = imageio.get_writer(temporary, format="FFMPEG", mode="I", fps=fps,
                                    codec="libx264", macro_block_size=2,
                                    ffmpeg_log_level="error")
        try:
            yield writer.append_data
        finally:
            writer.close()
