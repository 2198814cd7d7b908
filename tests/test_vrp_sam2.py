"""VRP-SAM with SAM 2 as the segmenter (issue 32, parts 2 and 3): the logits against a
PyTorch reference (the project's VRP encoder reference feeding the official `sam2` decoder),
and a toy run on the toy SAM 2 that trains with cached embeddings, predicts, evaluates,
exports and follows its reference through a video (`predict-video`).

Random weights, float32; logits within 1e-3 (max abs), as VRP-SAM's own parity tests.
"""

from __future__ import annotations

import json
import types

import jax
import numpy as np
import pytest
import torch
from test_vrp_parity import _episode
from torch_vrp import TorchVRPEncoder, TorchVRPSam2, nchw, randomize_

import sam_port
from vrp_sam_jax.cli import main
from vrp_sam_jax.models import VRPSam, VRPSamConfig
from vrp_sam_jax.weights.release import convert_release

LOGIT_TOL = 1e-3


def test_logits_match_the_pytorch_reference(toy_sam2):
    """ResNet-tiny + the toy SAM 2 (its image encoder included), 2 episodes of 2 shots."""
    path, torch_sam2 = toy_sam2
    torch_enc = randomize_(TorchVRPEncoder("resnet_tiny", hidden_dim=32), seed=5)
    torch_model = TorchVRPSam2(torch_enc, torch_sam2, image_size=96).eval()
    weights = convert_release(torch_enc.state_dict_release(), None, "mem")
    params = {**weights.params, "sam": sam_port.load_sam(path).params}
    model_config = VRPSamConfig(backbone="resnet_tiny", sam_type="sam2.1_toy", image_size=96)
    eps = [_episode(96, 2, "mask", seed=s) for s in (11, 12)]
    refs, masks, target = (np.concatenate(parts) for parts in zip(*eps, strict=True))
    with torch.no_grad():
        want = torch_model(nchw(target), nchw(refs), torch.from_numpy(masks)).numpy()
    got = jax.jit(VRPSam(model_config).apply)({"params": params}, refs, masks, target)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=LOGIT_TOL)


def test_a_toy_run_on_sam2_trains_predicts_evaluates_and_exports(tmp_path, capsys):
    """The toy config with `model.sam_type=sam2.1_toy` (random, frozen), only the VRP
    encoder trained, SAM 2's embeddings (packed with the high-res features) cached."""
    from test_model_io import _last_json, _predict, _toy_files

    run = tmp_path / "run"
    assert main(["train", "--config", "toy", "--workdir", str(run), "--quiet",
                 "--config.model.sam_type=sam2.1_toy",
                 "--config.train.trainable=encoder", "--config.cache.embeddings=True",
                 "--config.model.image_size=64", "--config.train.epochs=1",
                 "--config.train.steps_per_epoch=4", "--config.data.val_episodes=8"]) == 0
    capsys.readouterr()
    cache = list((run / "embedding_cache").glob("sam2.1_toy_64px_float16_*/part-*.npy"))
    assert cache and np.load(cache[0], mmap_mode="r").shape[1:] == (8, 8, 4 * 32)

    paths = _toy_files(tmp_path)
    from_run = _predict(run, paths, tmp_path / "run_out")
    assert _last_json(capsys)["model"]["sam"]
    assert main(["export", "--checkpoint", str(run), "--output", str(tmp_path / "exported")]) == 0
    capsys.readouterr()
    from_export = _predict(tmp_path / "exported", paths, tmp_path / "export_out")
    capsys.readouterr()
    for name in ("t1", "t2"):
        np.testing.assert_array_equal(from_run[name][0], from_export[name][0])
        assert from_run[name][0].std() > 0
    common = ["--num-episodes", "8", "--figures", "0", "--quiet"]
    assert main(["evaluate", "--checkpoint", str(run), "--output-dir", str(tmp_path / "e1"),
                 *common]) == 0
    capsys.readouterr()
    report = json.loads((tmp_path / "e1" / "fold0.json").read_text())
    assert report["episodes"] == 8 and 0 <= report["miou"] <= 100

    assert main(["export", "--checkpoint", str(run), "--format", "release", "--output",
                 str(tmp_path / "best_model.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "segmenter is SAM 2 (sam2.1_toy)" in err and "\n" not in err
    assert not (tmp_path / "best_model.pt").exists()
    _predict_video(run, paths, tmp_path, capsys)


def _predict_video(run, paths, tmp_path, capsys):
    """`predict-video` on a short clip (the first target sliding right), as a frame folder
    and as an MP4: a mask per frame and the overlay video; the first frame's mask is what
    `predict` gives on that frame (the reference found the object there and prompted SAM 2
    with it); the later ones come from SAM 2's memory."""
    import imageio.v2 as imageio
    from PIL import Image

    first = np.asarray(Image.open(paths["t1"]))
    clip = [np.roll(first, 3 * t, axis=1) for t in range(4)]
    folder = tmp_path / "clip"
    folder.mkdir()
    for t, frame in enumerate(clip):
        Image.fromarray(frame).save(folder / f"{t:05d}.png")
    video = tmp_path / "clip.mp4"
    imageio.mimwrite(video, clip, fps=4, macro_block_size=1, ffmpeg_log_level="error")
    reference = ["--vrp-checkpoint", str(run), "--reference", str(paths["ref"]),
                 "--reference-mask", str(paths["mask"])]
    out = tmp_path / "video_out"
    assert main(["predict-video", *reference, str(folder), "--output-dir", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 4 and summary["prompted_frames"] == [0]
    masks = [np.asarray(Image.open(out / "masks" / f"{t:05d}.png")) for t in range(4)]
    assert all(m.shape == first.shape[:2] for m in masks) and masks[0].any()
    single = tmp_path / "frame0_out"
    assert main(["predict", *reference, str(folder / "00000.png"), "--output-dir",
                 str(single)]) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(masks[0], np.asarray(Image.open(single / "00000.png")))
    overlay = imageio.get_reader(out / "overlay.mp4")
    assert overlay.count_frames() == 4
    overlay.close()
    # a video file; the outputs are not replaced without --overwrite
    assert main(["predict-video", *reference, str(video), "--output-dir", str(out),
                 "--no-overlay"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["predict-video", *reference, str(video), "--output-dir", str(out),
                 "--no-overlay", "--overwrite", "--reprompt"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 4


@pytest.mark.parametrize("alias, name", [("sam2.1_hiera_b+", "sam2.1_hiera_base_plus"),
                                         ("sam2_hiera_t", "sam2_hiera_tiny")])
def test_config_names_a_sam2_by_its_short_name(alias, name):
    assert VRPSamConfig(backbone="resnet_tiny", sam_type=alias).sam_type == name


class _ScriptedTracker:
    """A stand-in for `SAM2VideoPredictor` whose tracked masks are given per frame: it
    records the prompts and the starts of each propagation."""

    def __init__(self, tracked: dict[int, bool]):
        self.tracked, self.prompts, self.starts = tracked, [], []

    def init_state(self, frames):
        return {"num_frames": len(frames)}

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        self.prompts.append(frame_idx)

    def propagate_in_video(self, state, start_frame_idx, trim_memory, progress):
        self.starts.append(start_frame_idx)
        for index in range(start_frame_idx, state["num_frames"]):
            logits = np.full((1, 1, 4, 6), 1.0 if self.tracked[index] else -1.0, np.float32)
            yield index, [1], logits


@pytest.mark.parametrize("reprompt", [False, True])
def test_the_reference_prompts_where_it_first_finds_the_object(reprompt):
    """Frames 0-1: the reference finds nothing; frame 2: it does, and prompts the tracker;
    frame 4: the track is lost; with `reprompt` the reference finds it again there and
    tracking resumes from frame 4, else frame 4 stays lost."""
    from vrp_sam_jax.video import FOUND_BY_REFERENCE, NOT_FOUND, TRACKED, VRPSamVideoPredictor

    found = {0: False, 1: False, 2: True, 3: True, 4: True, 5: True}
    video = VRPSamVideoPredictor.__new__(VRPSamVideoPredictor)
    video.images = types.SimpleNamespace(
        predict=lambda frame: (np.full((4, 6), found[int(frame[0, 0, 0])]), None))
    video.tracker = _ScriptedTracker({2: True, 3: True, 4: False, 5: True})
    video.reprompt = reprompt
    frames = [np.full((4, 6, 3), t, np.uint8) for t in range(6)]
    got = [(index, how, bool(mask.any())) for index, mask, how in video.track(frames)]
    want = [(0, NOT_FOUND, False), (1, NOT_FOUND, False), (2, FOUND_BY_REFERENCE, True),
            (3, TRACKED, True)]
    if reprompt:
        want += [(4, FOUND_BY_REFERENCE, True), (5, TRACKED, True)]
        assert video.tracker.prompts == [2, 4] and video.tracker.starts == [2, 4]
    else:
        want += [(4, TRACKED, False), (5, TRACKED, True)]
        assert video.tracker.prompts == [2] and video.tracker.starts == [2]
    assert got == want
