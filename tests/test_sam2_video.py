"""SAM 2's video predictor (issue 32, part 3) against the official `SAM2VideoPredictor`
(`sam2==1.1.0`, built as `build_sam2_video_predictor` builds it, without Hydra) on the toy
SAM 2 with random weights: the same prompts on a clip of JPEG frames, the masks of every
call compared at the video's size.

Tolerance: 1e-4 of the largest logit. Our step computes what the official computes in
float32 (differences of order 1e-6 on these logits); the memory features are stored in
bfloat16 by both, so a feature at a rounding boundary could round one way here and the other
there (one bfloat16 step, 0.4% of that value): the bound leaves room for a few of those,
far below what a wrong memory frame, pointer or encoding gives (order 1).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import sam_port
from sam_port.sam2_video_predictor import SAM2VideoPredictor, fill_holes, non_overlapping
from sam_port.video_frames import FrameError, VideoFrames

RELATIVE_TOL = 1e-4
HEIGHT, WIDTH, FRAMES = 96, 160, 6


def _clip(folder) -> np.ndarray:
    """A bright disk moving right over noise, as JPEG frames `0.jpg` ... in `folder`; the
    first frame's disk as the object's mask."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    folder.mkdir()
    for t in range(FRAMES):
        disk = np.hypot(yy - 48, xx - 50 - 8 * t) < 25
        grey = disk * 200 + rng.integers(0, 40, (HEIGHT, WIDTH))
        Image.fromarray(np.repeat(grey[..., None], 3, -1).astype(np.uint8)).save(
            folder / f"{t}.jpg")
    return np.hypot(yy - 48, xx - 50) < 25


def _close(got: np.ndarray, want: torch.Tensor, what: str) -> None:
    want = want.numpy()
    assert got.shape == want.shape, what
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=RELATIVE_TOL * scale, err_msg=what)


def test_propagation_matches_the_official_video_predictor(tmp_path, monkeypatch):
    """Object 1 from a mask on frame 0 (resized from the video's size), object 2 from a box
    and a click (a single mask: the stability fallback); both propagated forwards; then a
    correction on a tracked frame (its previous logits as the mask prompt, the memory of
    the frames before it) propagated forwards and backwards from there. The toy's random
    weights lose the objects on some frames, so the no-object paths run too."""
    import sam2.utils.misc
    from torch_sam2 import build_torch_sam2, connected_components, save_official_checkpoint

    # the official hole filling needs its CUDA extension's connected components
    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", connected_components)
    official = build_torch_sam2(sam_port.get_sam2_config("sam2.1_toy"), seed=3, video=True)
    ours = SAM2VideoPredictor(sam_port.load_sam(save_official_checkpoint(
        official, tmp_path / "sam2.1_toy.pt")))
    mask = _clip(tmp_path / "frames")
    states = official.init_state(str(tmp_path / "frames")), ours.init_state(tmp_path / "frames")

    def both(method: str, *args, **kwargs):
        want = getattr(official, method)(states[0], *args, **kwargs)
        got = getattr(ours, method)(states[1], *args, **kwargs)
        assert got[:2] == want[:2]  # frame index, object ids
        _close(got[2], want[2], f"{method}{args}")

    def propagate(**kwargs):
        want = list(official.propagate_in_video(states[0], **kwargs))
        got = list(ours.propagate_in_video(states[1], progress=False, **kwargs))
        assert [g[:2] for g in got] == [w[:2] for w in want]
        for (index, _, masks), (_, _, official_masks) in zip(got, want, strict=True):
            _close(masks, official_masks, f"frame {index} {kwargs}")
        return {index: masks for index, _, masks in got}

    with torch.no_grad():
        both("add_new_mask", 0, 1, mask)
        both("add_new_points_or_box", 0, 2, points=[[120, 50]], labels=[1],
             box=[100, 20, 150, 80])
        forward = propagate()
        seen = [(masks > 0).any(axis=(1, 2, 3)) for masks in forward.values()]
        assert any(s.all() for s in seen) and any(not s.any() for s in seen)
        both("add_new_points_or_box", 3, 1, points=[[70, 40], [20, 20]], labels=[1, 0])
        propagate(start_frame_idx=3)
        propagate(start_frame_idx=3, reverse=True)
    ours.reset_state(states[1])
    assert states[1]["obj_ids"] == [] and not states[1]["output_dict_per_obj"]


def test_trimmed_memory_forgets_only_what_no_later_frame_reads(toy_sam2):
    """`trim_memory` keeps what the next frames attend to: the masks are those of a full
    pass, and the outputs kept are the prompted frame and the last 15 frames."""
    path, _ = toy_sam2
    predictor = SAM2VideoPredictor(sam_port.load_sam(path))
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(20)]
    prompt = np.zeros((40, 56), bool)
    prompt[10:30, 15:40] = True
    results = []
    for trim in (False, True):
        state = predictor.init_state(frames)
        predictor.add_new_mask(state, 0, "obj", prompt)
        results.append([m for _, _, m in predictor.propagate_in_video(
            state, trim_memory=trim, progress=False)])
    for full, trimmed in zip(*results, strict=True):
        np.testing.assert_array_equal(full, trimmed)
    outputs = state["output_dict_per_obj"][0]
    assert list(outputs["cond_frame_outputs"]) == [0]
    assert sorted(outputs["non_cond_frame_outputs"]) == list(range(5, 20))


def test_hole_filling_and_non_overlap_as_the_official(monkeypatch):
    import sam2.utils.misc
    from sam2.sam2_video_predictor import SAM2VideoPredictor as Official
    from torch_sam2 import connected_components

    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", connected_components)
    rng = np.random.default_rng(2)
    logits = rng.normal(0.5, 1.0, (3, 1, 24, 24)).astype(np.float32)
    want = sam2.utils.misc.fill_holes_in_mask_scores(torch.from_numpy(logits), 8).numpy()
    assert (want != logits).any()
    np.testing.assert_array_equal(fill_holes(logits, 8), want)
    want = Official._apply_non_overlapping_constraints(None, torch.from_numpy(logits))
    np.testing.assert_array_equal(non_overlapping(logits), want.numpy())


def test_frames_of_a_folder_in_the_official_order(tmp_path):
    folder = tmp_path / "numbered"
    folder.mkdir()
    for index in (10, 9, 0):
        Image.new("RGB", (8, 6), (index, 0, 0)).save(folder / f"{index:d}.jpg")
    (folder / "notes.txt").write_text("not a frame")
    frames = VideoFrames(folder)
    assert [frames.name(i).rsplit("/", 1)[1] for i in range(3)] == ["0.jpg", "9.jpg", "10.jpg"]
    assert (frames.height, frames.width, len(frames)) == (6, 8, 3)


@pytest.mark.parametrize("case, message", [
    ("empty", "no frames (.jpg, .jpeg or .png files)"),
    ("missing", "no such video file or frame folder"),
    ("sizes", "frame is 9x6, the video's first is 8x6"),
    ("broken", "not a readable image"),
])
def test_bad_videos_are_named_in_one_line(tmp_path, case, message):
    folder = tmp_path / "frames"
    folder.mkdir()
    if case in ("sizes", "broken"):
        Image.new("RGB", (8, 6)).save(folder / "0.png")
        if case == "sizes":
            Image.new("RGB", (9, 6)).save(folder / "1.png")
        else:
            (folder / "1.png").write_bytes(b"not a png")
    source = tmp_path / "nothing" if case == "missing" else folder
    with pytest.raises(FrameError, match=re.escape(message)):
        frames = VideoFrames(source)
        frames.frame(1)
