"""Code written for `segment_anything` runs on `sam_port` by changing the import.

The official predictor notebook's prompt scenarios are one script, run twice: with
`segment_anything` and the official model, and with `sam_port` and ours. Only the import, the
constructor and the line that makes an input array (`torch.tensor(..., device=...)` there)
differ. Tolerances as in test_sam_parity.py: logits and IoU within 1e-3, boolean masks equal
wherever the reference logit is further than 1e-3 from 0 (at least 90% of the pixels).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor as TorchPredictor
from segment_anything.utils.transforms import ResizeLongestSide as TorchResize

import sam_port
from sam_port.host_array import HostArray
from sam_port.transforms import ResizeLongestSide

TOL = 1e-3

# The notebook's cells (predictor_example.ipynb), with its image and coordinates scaled to a
# 160x120 picture. `results` collects what the notebook shows.
SCENARIOS = """
{imports}
{constructor}
sam.to(device="cpu")
predictor = SamPredictor(sam)
predictor.set_image(image)
results = {{}}

input_point = np.array([[50, 37]])
input_label = np.array([1])
masks, scores, logits = predictor.predict(
    point_coords=input_point, point_labels=input_label, multimask_output=True)
results["one point"] = (masks, scores)

input_point = np.array([[50, 37], [112, 62]])
input_label = np.array([1, 1])
mask_input = logits[np.argmax(scores), :, :]
masks, _, _ = predictor.predict(point_coords=input_point, point_labels=input_label,
                                mask_input=mask_input[None, :, :], multimask_output=False)
results["two points and a mask"] = masks

input_label = np.array([1, 0])
masks, _, _ = predictor.predict(point_coords=input_point, point_labels=input_label,
                                mask_input=mask_input[None, :, :], multimask_output=False)
results["a background point"] = masks

input_box = np.array([42, 60, 70, 87])
masks, _, _ = predictor.predict(point_coords=None, point_labels=None, box=input_box[None, :],
                                multimask_output=False)
results["a box"] = masks

input_point = np.array([[57, 75]])
input_label = np.array([0])
masks, _, _ = predictor.predict(point_coords=input_point, point_labels=input_label,
                                box=input_box, multimask_output=False)
results["a box and a point"] = masks

input_boxes = {tensor}([[7, 27, 152, 85], [42, 60, 70, 87], [137, 55, 155, 80],
                        [124, 67, 140, 75]])
transformed_boxes = predictor.transform.apply_boxes_torch(input_boxes, image.shape[:2])
masks, _, _ = predictor.predict_torch(point_coords=None, point_labels=None,
                                      boxes=transformed_boxes, multimask_output=False)
results["batched boxes"] = np.stack([mask.cpu().numpy() for mask in masks])
masks, iou, low_res = predictor.predict_torch(point_coords=None, point_labels=None,
                                              boxes=transformed_boxes, multimask_output=False,
                                              return_logits=True)
results["batched logits"] = (masks.cpu().numpy(), iou.cpu().numpy(), low_res.cpu().numpy())
results["embedding"] = predictor.get_image_embedding().cpu().numpy()
"""

OFFICIAL = dict(
    imports="from segment_anything import SamPredictor",
    constructor="sam = torch_model",
    tensor="(lambda rows: torch.tensor(rows, device=predictor.device))",
)
OURS = dict(
    imports="from sam_port import SamPredictor, load_sam",
    constructor="sam = load_sam(checkpoint)",
    tensor="np.array",
)


def _image(h: int = 120, w: int = 160) -> np.ndarray:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx * 1.5, yy * 2, (xx + yy) / 2], -1)
    return np.clip(smooth + rng.integers(0, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def models(tiny_sam):
    path, torch_model = tiny_sam
    return torch_model, path


def _run(names: dict, **scope) -> dict:
    scope.update(np=np, torch=torch, image=_image())
    exec(SCENARIOS.format(**names), scope)
    return scope["results"]


def _same_masks(got, want_logits, want_masks):
    got = np.asarray(got)
    assert got.dtype == bool and got.shape == want_masks.shape
    decided = np.abs(want_logits) > TOL
    assert decided.mean() > 0.9
    np.testing.assert_array_equal(got[decided], want_masks[decided])


def test_predictor_notebook_runs_unchanged(models):
    torch_model, path = models
    want = _run(OFFICIAL, torch_model=torch_model)
    got = _run(OURS, checkpoint=str(path))
    assert set(got) == set(want)
    logits, iou, low_res = want["batched logits"]
    np.testing.assert_allclose(got["batched logits"][0], logits, rtol=0, atol=TOL)
    np.testing.assert_allclose(got["batched logits"][1], iou, rtol=0, atol=TOL)
    np.testing.assert_allclose(got["batched logits"][2], low_res, rtol=0, atol=TOL)
    _same_masks(got["batched boxes"], logits, want["batched boxes"])
    assert want["embedding"].shape == got["embedding"].shape == (1, 32, 8, 8)
    np.testing.assert_allclose(got["embedding"], want["embedding"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(got["one point"][1], want["one point"][1], rtol=0, atol=TOL)
    for name in ["two points and a mask", "a background point", "a box", "a box and a point"]:
        mine, theirs = np.asarray(got[name]), want[name]
        assert mine.shape == theirs.shape and mine.dtype == bool
        assert (mine == theirs).mean() > 0.99, name


def test_end_to_end_call(models):
    """The notebook's batched end-to-end cell: two images, boxes and points, `sam(...)`."""
    torch_model, path = models
    ours = sam_port.load_sam(path)
    image1, image2 = _image(), _image(90, 140)[::-1].copy()
    boxes1 = np.array([[7, 27, 152, 85], [42, 60, 70, 87]], np.float32)
    boxes2 = np.array([[10, 5, 60, 80]], np.float32)
    points2 = np.array([[[30, 40], [50, 20]]], np.float32)

    def batched(resize, prepare, tensor):
        return [
            {"image": prepare(image1), "boxes": resize.apply_boxes_torch(tensor(boxes1),
                                                                          image1.shape[:2]),
             "original_size": image1.shape[:2]},
            {"image": prepare(image2), "boxes": resize.apply_boxes_torch(tensor(boxes2),
                                                                          image2.shape[:2]),
             "point_coords": resize.apply_coords_torch(tensor(points2), image2.shape[:2]),
             "point_labels": tensor(np.array([[1, 0]])), "original_size": image2.shape[:2]},
        ]

    torch_resize = TorchResize(torch_model.image_encoder.img_size)
    with torch.no_grad():
        want = torch_model(batched(
            torch_resize,
            lambda im: torch.as_tensor(torch_resize.apply_image(im)).permute(2, 0, 1),
            torch.as_tensor), multimask_output=False)
    resize = ResizeLongestSide(ours.image_encoder.img_size)
    got = ours(batched(resize, lambda im: resize.apply_image(im).transpose(2, 0, 1),
                       np.asarray), multimask_output=False)
    assert len(got) == len(want) == 2
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w) == {"masks", "iou_predictions", "low_res_logits"}
        assert isinstance(g["masks"], HostArray) and g["masks"].shape == w["masks"].shape
        np.testing.assert_allclose(g["iou_predictions"].cpu().numpy(),
                                   w["iou_predictions"].numpy(), rtol=0, atol=TOL)
        np.testing.assert_allclose(g["low_res_logits"].cpu().numpy(),
                                   w["low_res_logits"].numpy(), rtol=0, atol=TOL)
        assert (g["masks"].numpy() == w["masks"].numpy()).mean() > 0.99


def test_torch_image_path(models):
    """apply_image_torch (antialiased resize) and set_torch_image, against the official."""
    torch_model, path = models
    ours = sam_port.load_sam(path)
    image = _image()
    nchw = image.transpose(2, 0, 1)[None].astype(np.float32)
    # The official method sizes the output from shape[0], shape[1] of its BCHW input (B, C),
    # a bug; ours from H, W, with its interpolation call:
    want_resized = torch.nn.functional.interpolate(
        torch.from_numpy(nchw), TorchResize.get_preprocess_shape(120, 160, 128),
        mode="bilinear", align_corners=False, antialias=True)
    got_resized = ResizeLongestSide(128).apply_image_torch(nchw)
    np.testing.assert_allclose(np.asarray(got_resized), want_resized.numpy(), rtol=0, atol=1e-3)

    reference, predictor = TorchPredictor(torch_model), sam_port.SamPredictor(ours)
    reference.set_torch_image(want_resized, image.shape[:2])
    predictor.set_torch_image(got_resized, image.shape[:2])
    assert predictor.input_size == tuple(reference.input_size)
    np.testing.assert_allclose(np.asarray(predictor.features), reference.features.numpy(),
                               rtol=0, atol=1e-4)
    kwargs = dict(point_coords=np.array([[40.0, 50.0]]), point_labels=np.array([1]),
                  return_logits=True)
    np.testing.assert_allclose(predictor.predict(**kwargs)[0], reference.predict(**kwargs)[0],
                               rtol=0, atol=TOL)
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\) with long side 128"):
        predictor.set_torch_image(nchw, image.shape[:2])


def test_official_object_interface(models):
    torch_model, path = models
    sam = sam_port.load_sam(path)
    assert sam.to(device="cuda") is sam and sam.eval() is sam
    assert sam.device == sam_port.SamPredictor(sam).device
    assert sam.image_encoder.img_size == 128 and sam.mask_threshold == 0.0
    predictor = sam_port.SamPredictor(sam)
    predictor.set_image(_image())
    # a precomputed embedding set by hand, as people do with the official predictor
    embedding = predictor.get_image_embedding()
    other = sam_port.SamPredictor(sam)
    other.features = np.asarray(embedding)
    other.original_size, other.input_size = predictor.original_size, predictor.input_size
    other.is_image_set = True
    kwargs = dict(point_coords=np.array([[20.0, 30.0]]), point_labels=np.array([1]))
    np.testing.assert_array_equal(other.predict(**kwargs)[1], predictor.predict(**kwargs)[1])
    with pytest.raises(ValueError, match=r"point_coords must be \(B, N, 2\)"):
        predictor.predict_torch(np.zeros((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="different batch sizes"):
        predictor.predict_torch(np.zeros((3, 1, 2)), np.ones((3, 1)), boxes=np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"mask_input must be \(B, 1, 32, 32\)"):
        predictor.predict_torch(None, None, mask_input=np.zeros((1, 32, 32, 1)))


def test_model_registry(models):
    _, path = models
    with pytest.raises(sam_port.CheckpointError,
                       match=r"model type vit_b \(width 768, 12 blocks\) was asked for"):
        sam_port.sam_model_registry["vit_b"](checkpoint=path)
    assert set(sam_port.sam_model_registry) == {"default", "vit_h", "vit_l", "vit_b"}


def test_host_array():
    x = HostArray.__new__(HostArray, (2, 3))
    y = np.arange(6).reshape(2, 3).view(HostArray)
    assert y.cpu() is y and y.detach() is y
    assert type(y.numpy()) is np.ndarray and type(y[0]) is HostArray
    np.testing.assert_array_equal(y[1].cpu().numpy(), [3, 4, 5])
    assert x.shape == (2, 3)
