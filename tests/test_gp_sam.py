"""GP-SAM, the geometric-prompt baseline: its prompt rules, its logits against the PyTorch
reference (the prior from `torch_vrp`, the prompts into the official SAM), and the
`evaluate` / `predict` commands that run it without a trained encoder.

Tolerances: prior 1e-4 relative; logits 1e-3 max abs and 1e-4 relative (float32, random
weights).
"""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch_sam import state_dict_numpy
from torch_vrp import TorchVRPEncoder, TorchVRPSam, nchw, randomize_

from sam_port.checkpoint import convert_sam_state_dict
from vrp_sam_jax.cli import main
from vrp_sam_jax.models import VRPSam, VRPSamConfig, gp_sam
from vrp_sam_jax.weights.release import convert_release

PRIOR_RTOL = 1e-4
LOGIT_TOL = 1e-3
LOGIT_RTOL = 1e-4


def test_points_lie_in_the_mask_and_the_box_is_tight():
    rng = np.random.default_rng(0)
    for trial in range(20):
        mask = np.zeros((40, 40), bool)
        y0, x0 = rng.integers(0, 30, 2)
        mask[y0:y0 + rng.integers(1, 10), x0:x0 + rng.integers(1, 10)] = True
        mask &= rng.random((40, 40)) > 0.3 * (trial % 2)  # holes in every other trial
        if not mask.any():
            continue
        xy, valid = gp_sam.sample_points(jnp.asarray(mask), jax.random.key(trial))
        xy, valid = np.asarray(xy).astype(int), np.asarray(valid)
        assert valid.sum() == min(gp_sam.NUM_POINTS, mask.sum())
        inside = xy[valid]
        assert mask[inside[:, 1], inside[:, 0]].all()
        assert len({tuple(p) for p in inside}) == len(inside)  # without replacement
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(gp_sam.tight_box(jnp.asarray(mask)),
                                      [xs.min(), ys.min(), xs.max(), ys.max()])


def test_pseudo_mask_thresholds_the_normalised_prior():
    prior = np.random.default_rng(1).random((2, 6, 6, 1)).astype(np.float32)
    prior[1] = 0.3  # no information: the whole image
    norm = np.asarray(gp_sam.normalised_prior(jnp.asarray(prior)))
    assert norm[0].min() == 0 and abs(norm[0].max() - 1) < 1e-6
    masks = np.asarray(gp_sam.pseudo_masks(jnp.asarray(prior), 6, 0.5))
    np.testing.assert_array_equal(masks[0], norm[0] >= 0.5 * norm[0].max())
    assert masks[1].all()
    points, boxes = gp_sam.geometric_prompts(jnp.asarray(masks), gp_sam.row_keys(
        jnp.arange(2), 0), "box+point", 1024)
    assert points[0].shape == (2, 5, 2) and boxes.shape == (2, 4)
    np.testing.assert_allclose(boxes[1], [0, 0, 1023, 1023])  # pixel 5 of 6 -> 1023
    with pytest.raises(ValueError, match="GP-SAM prompts"):
        gp_sam.geometric_prompts(jnp.asarray(masks), None, "mask", 1024)


@pytest.fixture(scope="module")
def models(tiny_sam):
    enc = randomize_(TorchVRPEncoder("resnet_tiny", hidden_dim=32), seed=31)
    _, sam = tiny_sam
    weights = convert_release(enc.state_dict_release(), None, "mem")
    params = {"backbone": weights.params["backbone"],  # no encoder: GP-SAM needs none
              "sam": convert_sam_state_dict(state_dict_numpy(sam), "tiny", "mem").params}
    return TorchVRPSam(enc, sam, image_size=96).eval(), params


@pytest.mark.parametrize("kind", ["point", "box", "box+point"])
def test_logits_match_official_sam_with_the_same_prompts(models, kind):
    """2 targets x 2 shots: our prior equals the reference's mean per-shot prior; our points
    lie in the pseudo mask thresholded from it; the official SAM given exactly our prompts
    (through its own prompt encoder) returns our logits."""
    torch_model, params = models
    model_config = VRPSamConfig(backbone="resnet_tiny", sam_type="tiny", image_size=96)
    rng = np.random.default_rng(2)
    refs = rng.normal(size=(2, 2, 96, 96, 3)).astype(np.float32)
    targets = rng.normal(size=(2, 96, 96, 3)).astype(np.float32)
    masks = np.zeros((2, 2, 96, 96), np.float32)
    masks[:, 0, 10:50, 20:70] = masks[:, 1, 40:90, 30:60] = 1
    reference = gp_sam.encode_reference(model_config, params, refs, masks)
    keys = gp_sam.row_keys(jnp.arange(2), 7)
    got = gp_sam.gp_sam_logits(model_config, kind, 0.5, params, reference, targets, keys)
    model = VRPSam(model_config)
    prior = model.apply({"params": params}, *reference, targets, method=model.target_prior)

    enc, sam = torch_model.encoder, torch_model.sam
    with torch.no_grad():
        want_prior = enc.mean_prior(torch.from_numpy(masks), nchw(targets), nchw(refs))
        assert np.abs(np.asarray(prior)[..., 0] - want_prior[:, 0].numpy()).max() \
            < PRIOR_RTOL * want_prior.abs().max().item()
        p = want_prior - want_prior.amin((2, 3), keepdim=True)
        p = p / (want_prior.amax((2, 3), keepdim=True) - want_prior.amin((2, 3), keepdim=True)
                 + 1e-7)
        p = F.interpolate(p, (96, 96), mode="bilinear", align_corners=True)[:, 0].numpy()
        pseudo = p >= 0.5 * p.max((1, 2), keepdims=True)
        points, boxes = gp_sam.geometric_prompts(jnp.asarray(pseudo), keys, kind, 128)
        scale = 127 / 95
        embeddings = torch_model.embed(nchw(targets))
        pe = sam.prompt_encoder
        want = []
        for b in range(2):
            pts = None
            if points is not None:
                xy = np.asarray(points[0][b]) / scale
                labels = np.asarray(points[1][b])
                on = labels == 1
                assert pseudo[b][np.round(xy[on, 1]).astype(int),
                                 np.round(xy[on, 0]).astype(int)].all()
                pts = (torch.tensor(np.asarray(points[0][b:b + 1])),
                       torch.tensor(labels[None]))
            box = None if boxes is None else torch.tensor(np.asarray(boxes[b:b + 1]))
            sparse, dense = pe(points=pts, boxes=box, masks=None)
            low, _ = sam.mask_decoder(image_embeddings=embeddings[b:b + 1],
                                      image_pe=pe.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse,
                                      dense_prompt_embeddings=dense, multimask_output=False)
            want.append(F.interpolate(low, (96, 96), mode="bilinear",
                                      align_corners=True)[0, 0].numpy())
    want = np.stack(want)
    assert np.abs(want).max() > 0.01  # a random tiny SAM's logits are small: relative too
    np.testing.assert_allclose(got, want, rtol=0, atol=LOGIT_TOL)
    assert np.abs(np.asarray(got) - want).max() < LOGIT_RTOL * np.abs(want).max()


def test_evaluate_gp_sam_on_the_toy_benchmark(tmp_path, capsys):
    """No checkpoint: the toy config's random frozen weights; the mIoU lands in the JSON and
    does not depend on the batch size (points are drawn per episode)."""
    results = []
    for batch in (8, 3):
        out = tmp_path / f"b{batch}"
        assert main(["evaluate", "--method", "gp-sam", "--gp-prompts", "point", "--config",
                     "toy", "--num-episodes", "12", "--figures", "0", "--output-dir", str(out),
                     "--quiet", f"--config.train.global_batch={batch}"]) == 0
        printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        stored = json.loads((out / "fold0.json").read_text())
        assert printed["method"] == stored["method"] == "gp-sam"
        assert stored["gp_prompts"] == "point" and stored["episodes"] == 12
        assert 0 < printed["miou"] <= 100
        results.append(stored["class_iou"])
    assert results[0] == results[1]


def test_vrp_evaluation_without_a_checkpoint_is_one_line(capsys):
    assert main(["evaluate", "--config", "toy"]) != 0
    assert "--checkpoint is needed" in capsys.readouterr().err


def test_predict_gp_sam_needs_no_trained_model(tiny_sam, tmp_path, capsys):
    """`vrp-sam predict --method gp-sam` from a SAM file and a backbone file only; without
    them, and without --method gp-sam, a VRP checkpoint is asked for in one line."""
    enc = randomize_(TorchVRPEncoder("resnet_tiny", hidden_dim=32), seed=41)
    shutil.copy(tiny_sam[0], tmp_path / "sam.pth")
    torch.save(enc.backbone_net.state_dict(), tmp_path / "backbone.pth")
    rng = np.random.default_rng(3)
    for name in ("ref", "t1", "t2"):
        Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(
            tmp_path / f"{name}.png")
    args = ["predict", "--method", "gp-sam", "--sam-checkpoint", str(tmp_path / "sam.pth"),
            "--backbone-checkpoint", str(tmp_path / "backbone.pth"), "--reference",
            str(tmp_path / "ref.png"), "--reference-box", "10,10,60,50", "--output-dir",
            str(tmp_path / "out"), "--save-logits", str(tmp_path / "t1.png"),
            str(tmp_path / "t2.png")]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["method"] == "gp-sam" and printed["backbone"] == "resnet_tiny"
    assert printed["model"]["backbone"].endswith("backbone.pth")
    masks = [np.asarray(Image.open(tmp_path / "out" / f"{n}.png")) for n in ("t1", "t2")]
    assert all(m.shape == (70, 90) for m in masks)
    assert (tmp_path / "out" / "t2_logits.npy").is_file()
    assert main(["predict", "--reference", str(tmp_path / "ref.png"), "--reference-box",
                 "10,10,60,50", "--output-dir", str(tmp_path / "o2"),
                 str(tmp_path / "t1.png")]) != 0
    assert "--vrp-checkpoint is needed" in capsys.readouterr().err
    assert main(["predict", "--method", "gp-sam", "--reference", str(tmp_path / "ref.png"),
                 "--reference-box", "10,10,60,50", "--output-dir", str(tmp_path / "o3"),
                 str(tmp_path / "t1.png")]) == 2
    err = capsys.readouterr().err
    assert "needs a SAM checkpoint" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o3").exists()
