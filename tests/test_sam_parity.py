"""Numerical parity of the Flax SAM with the official `segment_anything` package.

Random weights (every parameter randomised, see torch_sam.py), random non-zero inputs, float32.
Image embeddings are compared on a noisy non-square picture, each side through its own
predictor's preprocessing (resize, normalise, pad), so one encoder forward per side serves
both the embedding and the predictor checks.
Tolerances (max abs): image embeddings 1e-4; low-res mask logits and IoU predictions 1e-3.
The tiny config runs the whole matrix; full-size ViT-B at 1024x1024 runs it once per CI run.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from segment_anything import SamPredictor as TorchSamPredictor

import sam_port

EMBED_TOL = 1e-4
LOGIT_TOL = 1e-3


@pytest.fixture(scope="module", params=["tiny", pytest.param("vit_b", marks=pytest.mark.full_size)])
def models(request):
    """(torch SAM, our SAM loaded from the torch.save'd official-layout state dict)."""
    model_type = request.param
    path, torch_model = request.getfixturevalue(f"{model_type}_sam")
    ours = sam_port.load_sam(path, model_type)
    assert ours.model_type == model_type
    return torch_model, ours


def _picture() -> np.ndarray:
    """A 480x640 RGB picture: smooth ramps plus uniform noise, no saturated pixels."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:480, 0:640]
    smooth = np.stack([xx / 3, yy / 2, (xx + yy) / 5], -1)
    return np.clip(smooth + rng.integers(0, 60, size=(480, 640, 3)), 1, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def predictors(models):
    """The official SamPredictor and ours, each set on the same non-square picture: resized,
    normalised, padded and embedded once per model (a ViT-B forward of the official model takes
    a CPU tens of seconds), for the embedding check, the decoding matrix and the predictor
    test."""
    torch_model, ours = models
    ref_pred, pred = TorchSamPredictor(torch_model), sam_port.SamPredictor(ours)
    image = _picture()
    ref_pred.set_image(image)
    pred.set_image(image)
    return ref_pred, pred


@pytest.fixture(scope="module")
def embeddings(predictors):
    """Both models' embeddings (NHWC) of the same picture."""
    ref_pred, pred = predictors
    return ref_pred.features.permute(0, 2, 3, 1).numpy(), np.asarray(pred.embedding_nhwc)


def test_image_embeddings(embeddings):
    ref, got = embeddings
    assert got.shape == ref.shape
    assert np.abs(ref).max() > 0.5  # a real signal, not zeros
    np.testing.assert_allclose(got, ref, rtol=0, atol=EMBED_TOL)


def _prompts(case: str, img_size: int, low_res: int, batch: int):
    rng = np.random.default_rng(hash(case) % 2**32)
    points = boxes = masks = None
    if "points" in case:
        coords = rng.uniform(0, img_size, size=(batch, 4, 2)).astype(np.float32)
        labels = np.tile(np.array([[1, 0, 1, 1]], np.int32), (batch, 1))
        points = (coords, labels)
    if "box" in case:
        lo = rng.uniform(0, img_size / 2, size=(batch, 2))
        boxes = np.concatenate([lo, lo + rng.uniform(8, img_size / 2, size=(batch, 2))], 1)
        boxes = boxes.astype(np.float32)
    if "mask" in case:
        masks = rng.normal(0, 3, size=(batch, low_res, low_res, 1)).astype(np.float32)
    return points, boxes, masks


CASES = ["points", "box", "points+box", "mask", "points+mask", "points+box+mask"]


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("batch", [1, 3], ids=["b1", "b3"])
def test_prompt_decoding(models, embeddings, case, multimask, batch):
    """Prompt encoder + mask decoder on the same image embedding (one image, `batch` prompts)."""
    torch_model, ours = models
    cfg = ours.config
    ref_emb, got_emb = embeddings
    points, boxes, masks = _prompts(case, cfg.img_size, cfg.low_res_size, batch)
    with torch.no_grad():
        sparse, dense = torch_model.prompt_encoder(
            points=None if points is None else tuple(map(torch.from_numpy, points)),
            boxes=None if boxes is None else torch.from_numpy(boxes),
            masks=None if masks is None else torch.from_numpy(masks).permute(0, 3, 1, 2),
        )
        ref_logits, ref_iou = torch_model.mask_decoder(
            image_embeddings=torch.from_numpy(ref_emb).permute(0, 3, 1, 2),
            image_pe=torch_model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
    logits, iou = ours.module.apply(
        ours.variables, jnp.asarray(got_emb), points, boxes, masks, multimask,
        method=sam_port.Sam.predict_from_embeddings,
    )
    num = 3 if multimask else 1
    assert logits.shape == (batch, num, cfg.low_res_size, cfg.low_res_size)
    assert np.abs(ref_logits.numpy()).max() > 0.05
    np.testing.assert_allclose(np.asarray(logits), ref_logits.numpy(), rtol=0, atol=LOGIT_TOL)
    np.testing.assert_allclose(np.asarray(iou), ref_iou.numpy(), rtol=0, atol=LOGIT_TOL)


def _check_prediction(ref_pred, pred, kwargs: dict, threshold_margin: float = LOGIT_TOL):
    """Logits (full-size and low-res) and IoU within the tolerance, and the boolean masks
    equal wherever the reference logit is further than `threshold_margin` from 0 (a pixel
    closer may flip within the tolerance). Returns the reference's prediction."""
    ref = ref_pred.predict(**kwargs, return_logits=True)
    (ref_logits, ref_iou, ref_low), (logits, iou, low) = ref, pred.predict(**kwargs,
                                                                            return_logits=True)
    assert logits.shape == ref_logits.shape
    np.testing.assert_allclose(low, ref_low, rtol=0, atol=LOGIT_TOL)
    np.testing.assert_allclose(iou, ref_iou, rtol=0, atol=LOGIT_TOL)
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=LOGIT_TOL)
    ref_masks, _, _ = ref_pred.predict(**kwargs)
    got_masks, _, _ = pred.predict(**kwargs)
    assert got_masks.dtype == bool and got_masks.shape == (logits.shape[0], 480, 640)
    decided = np.abs(ref_logits) > threshold_margin
    assert decided.mean() > 0.9
    np.testing.assert_array_equal(got_masks[decided], ref_masks[decided])
    return ref


def test_predictor_non_square(predictors):
    """The public predictor on a 480x640 image: resize, normalise, pad, prompt transforms,
    low-res logits, upscaling to the original size and thresholding, against SamPredictor."""
    ref_pred, pred = predictors
    assert pred.input_size == tuple(ref_pred.input_size)
    assert pred.original_size == tuple(ref_pred.original_size)

    points = np.array([[320.0, 240.0], [100.5, 400.25], [600, 30]])
    labels = np.array([1, 0, 1])
    box = np.array([50, 60, 420, 300])
    first = None
    for kwargs in [
        dict(point_coords=points, point_labels=labels, multimask_output=True),
        dict(point_coords=points[:1], point_labels=labels[:1], multimask_output=False),
        dict(box=box, multimask_output=False),
        dict(point_coords=points, point_labels=labels, box=box, multimask_output=True),
    ]:
        ref = _check_prediction(ref_pred, pred, kwargs)
        first = first if first is not None else ref[2]

    # A previous prediction's low-res logits fed back as mask_input.
    mask_input = first[:1]
    kwargs = dict(point_coords=points, point_labels=labels, mask_input=mask_input,
                  multimask_output=False)
    _check_prediction(ref_pred, pred, kwargs)
