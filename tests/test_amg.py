"""The automatic mask generator against `segment_anything`'s, and its helpers against
`segment_anything.utils.amg`.

Random weights, float32. The official generator's NMS is torchvision's; the tests' stand-in
(conftest.py) is plain torch with torchvision's rules, and `test_nms_*` pins those rules on
hand-made boxes so that neither side is only checked against the other. Generator tolerances:
the same number of masks, matched one to one (same point and crop) with mask IoU > 0.99, area
within 8 pixels, box edges within 1 pixel, predicted IoU and stability score within 1e-3.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator as TorchGenerator
from segment_anything.utils import amg as ref
from torch_sam import build_torch_sam

import sam_port
from sam_port import amg
from sam_port.automatic_mask_generator import SamAutomaticMaskGenerator, score_point_batch
from sam_port.build_sam import build_sam_type

AREA_TOL, BOX_TOL, SCORE_TOL, MIN_IOU = 8, 1, 1e-3, 0.99


def _scene(h: int = 96, w: int = 128) -> np.ndarray:
    """Coloured discs on a dark background, with a little noise."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.full((h, w, 3), 30, np.uint8)
    discs = [(30, 30, 18, (250, 40, 40)), (90, 25, 14, (40, 250, 40)),
             (70, 70, 20, (40, 40, 250)), (20, 75, 12, (250, 250, 40)),
             (110, 80, 10, (250, 40, 250))]
    for cx, cy, r, colour in discs:
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = colour
    return np.clip(image + rng.integers(0, 10, size=image.shape), 0, 255).astype(np.uint8)


def _torch_model(seed: int, blocky: bool) -> torch.nn.Module:
    """A tiny random SAM whose masks are not all alike: with `blocky`, the decoder's
    upscaling kernels are made constant (masks become unions of embedding cells, so boxes
    vary); the hypernetwork's last layer is scaled up so that logits leave [-1, 1] and the
    stability score is not 0."""
    model = build_torch_sam(sam_port.get_config("tiny"), seed=seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if blocky and name.startswith("mask_decoder.output_upscaling") and p.ndim == 4:
                p.copy_(p.mean((2, 3), keepdim=True).expand_as(p))
            if name.startswith("mask_decoder.output_hypernetworks_mlps") and \
                    name.endswith("layers.2.weight"):
                p.mul_(300.0)
    return model


def _models(kind: str, directory):
    torch_model = _torch_model(4, blocky=kind == "blocky")
    path = directory / "sam_tiny.pth"
    torch.save(torch_model.state_dict(), path)
    return kind, torch_model, sam_port.load_sam(path, "tiny")


@pytest.fixture(scope="module", params=["blocky", "scattered"])
def models(request, tmp_path_factory):
    """Both weight draws, for the parity tests."""
    return _models(request.param, tmp_path_factory.mktemp("amg"))


@pytest.fixture(scope="module")
def blocky(tmp_path_factory):
    """The draw with varied masks, for the tests of one path each."""
    return _models("blocky", tmp_path_factory.mktemp("amg_blocky"))


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def _match(reference: list[dict], ours: list[dict]) -> None:
    """Every official record has its own counterpart among ours (same point and crop, the
    best mask IoU), within the tolerances."""
    assert len(ours) == len(reference)
    used = set()
    for r in reference:
        candidates = [i for i, o in enumerate(ours) if i not in used
                      and o["crop_box"] == r["crop_box"]
                      and np.allclose(o["point_coords"], r["point_coords"], atol=1e-4)]
        assert candidates, f"no mask of ours at point {r['point_coords']} crop {r['crop_box']}"
        best = max(candidates, key=lambda i: _mask_iou(ours[i]["segmentation"],
                                                       r["segmentation"]))
        o = ours[best]
        used.add(best)
        assert _mask_iou(o["segmentation"], r["segmentation"]) > MIN_IOU
        assert abs(o["area"] - r["area"]) <= AREA_TOL
        assert np.abs(np.subtract(o["bbox"], r["bbox"])).max() <= BOX_TOL
        assert abs(o["predicted_iou"] - r["predicted_iou"]) <= SCORE_TOL
        if np.isnan(r["stability_score"]):  # 0/0: no pixel above threshold - offset
            assert np.isnan(o["stability_score"])
        else:
            assert abs(o["stability_score"] - r["stability_score"]) <= SCORE_TOL
        assert o["segmentation"].dtype == bool and o["area"] == o["segmentation"].sum()


@pytest.mark.parametrize("crop_n_layers", [0, 1], ids=["whole", "crops"])
def test_generator_parity(models, crop_n_layers):
    kind, torch_model, ours = models
    kwargs = dict(points_per_side=8, points_per_batch=24, pred_iou_thresh=0.0,
                  stability_score_thresh=0.0, crop_n_layers=crop_n_layers)
    if kind == "scattered":  # masks all span the image: keep them apart for a 1:1 check
        kwargs.update(box_nms_thresh=1.0, crop_nms_thresh=1.0, stability_score_thresh=0.2,
                      pred_iou_thresh=-0.15)
    image = _scene()
    reference = TorchGenerator(torch_model, **kwargs).generate(image)
    got = SamAutomaticMaskGenerator(ours, **kwargs).generate(image)
    _match(reference, got)
    nonempty = [r for r in reference if r["area"]]
    assert len(nonempty) >= 5  # the comparison covers real masks
    assert len({tuple(r["bbox"]) for r in nonempty}) >= 3
    if crop_n_layers and kind == "blocky":  # (scattered masks all touch inner crop edges)
        assert len({tuple(r["crop_box"]) for r in reference}) >= 2
    if kind == "scattered":
        assert 0 < min(r["stability_score"] for r in reference) < 1
        assert len(reference) < 8 * 8 * 3 * (1 + 4 * crop_n_layers)  # the filters acted


@pytest.mark.full_size
def test_generator_parity_vit_b(vit_b_sam):
    """Full-size ViT-B (random weights) on a 240x320 picture, 6x6 points: the masks all span
    the image, so NMS is off and the score filters select."""
    path, torch_model = vit_b_sam
    kwargs = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                  box_nms_thresh=1.0)
    image = _scene(240, 320)
    reference = TorchGenerator(torch_model, **kwargs).generate(image)
    _match(reference, SamAutomaticMaskGenerator(sam_port.load_sam(path), **kwargs)
           .generate(image))
    assert sum(r["area"] > 0 for r in reference) >= 10


def test_generator_notebook_settings(blocky, monkeypatch):
    """The official example notebook's tuned generator (crop layer, points downscaled per
    layer, small regions removed; its points per side scaled to the tiny picture), with the
    official's OpenCV call served by ours."""
    import segment_anything.automatic_mask_generator as official

    kind, torch_model, ours = blocky
    monkeypatch.setattr(official, "remove_small_regions", amg.remove_small_regions)
    monkeypatch.setitem(sys.modules, "cv2", types.ModuleType("cv2"))  # imported, not used
    kwargs = dict(points_per_side=8, pred_iou_thresh=-0.2, stability_score_thresh=0.1,
                  crop_n_layers=1, crop_n_points_downscale_factor=2, min_mask_region_area=30)
    image = _scene()
    reference = TorchGenerator(model=torch_model, **kwargs).generate(image)
    _match(reference, SamAutomaticMaskGenerator(model=ours, **kwargs).generate(image))
    assert reference


def test_generator_output_modes(blocky):
    """coco_rle and uncompressed_rle decode to the binary masks."""
    _, torch_model, ours = blocky
    from pycocotools import mask as mask_utils

    image = _scene()
    kwargs = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    binary = SamAutomaticMaskGenerator(ours, **kwargs).generate(image)
    coco = SamAutomaticMaskGenerator(ours, output_mode="coco_rle", **kwargs).generate(image)
    raw = SamAutomaticMaskGenerator(ours, output_mode="uncompressed_rle", **kwargs).generate(image)
    assert len(binary) == len(coco) == len(raw) > 0
    for b, c, r in zip(binary, coco, raw, strict=True):
        assert isinstance(c["segmentation"]["counts"], str)
        np.testing.assert_array_equal(mask_utils.decode(c["segmentation"]).astype(bool),
                                      b["segmentation"])
        np.testing.assert_array_equal(amg.rle_to_mask(r["segmentation"]), b["segmentation"])
        assert b["area"] == c["area"] == int(mask_utils.area(c["segmentation"]))


def test_small_regions_match_official(blocky, monkeypatch):
    """`postprocess_small_regions` as the official, with its OpenCV call served by ours."""
    _, torch_model, ours = blocky
    import segment_anything.automatic_mask_generator as official

    monkeypatch.setattr(official, "remove_small_regions", amg.remove_small_regions)
    kwargs = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                  box_nms_thresh=1.0)
    image = _scene()
    generator = TorchGenerator(torch_model, **kwargs)
    data = generator._generate_masks(image)
    reference = generator.postprocess_small_regions(data, 30, 0.7)
    ours_data = SamAutomaticMaskGenerator(ours, **kwargs)._generate_masks(image)
    got = SamAutomaticMaskGenerator.postprocess_small_regions(ours_data, 30, 0.7)
    assert len(got["rles"]) == len(reference["rles"])
    for a, b in zip(got["rles"], reference["rles"], strict=True):
        assert _mask_iou(amg.rle_to_mask(a), ref.rle_to_mask(b)) > MIN_IOU


def test_one_compiled_program_per_crop_size(tmp_path):
    """81 points in batches of 64: the second batch is padded, and the batch program
    compiles once for the image's size."""
    sam = build_sam_type("tiny")
    before = score_point_batch._cache_size()
    generator = SamAutomaticMaskGenerator(sam, points_per_side=9, points_per_batch=64,
                                          pred_iou_thresh=0.0, stability_score_thresh=0.0)
    generator.generate(_scene(80, 100))
    assert score_point_batch._cache_size() == before + 1
    generator.generate(_scene(80, 100)[::-1].copy())
    assert score_point_batch._cache_size() == before + 1


def test_generator_arguments_checked():
    sam = build_sam_type("tiny")
    with pytest.raises(ValueError, match="Exactly one of points_per_side or point_grids"):
        SamAutomaticMaskGenerator(sam, points_per_side=None)
    with pytest.raises(ValueError, match="Exactly one"):
        SamAutomaticMaskGenerator(sam, point_grids=[amg.build_point_grid(4)])
    with pytest.raises(ValueError, match="output_mode"):
        SamAutomaticMaskGenerator(sam, output_mode="png")
    with pytest.raises(ValueError, match="point grids for 2 crop layers"):
        SamAutomaticMaskGenerator(sam, points_per_side=None, crop_n_layers=1,
                                  point_grids=[amg.build_point_grid(4)])
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        SamAutomaticMaskGenerator(sam).generate(np.zeros((10, 10), np.uint8))


# ------------------------------------------------------------------------------------ helpers


def test_point_grids_and_crop_boxes():
    np.testing.assert_array_equal(amg.build_point_grid(5), ref.build_point_grid(5))
    for got, want in zip(amg.build_all_layer_point_grids(16, 2, 2),
                         ref.build_all_layer_point_grids(16, 2, 2), strict=True):
        np.testing.assert_array_equal(got, want)
    for size, layers, ratio in [((96, 128), 1, 512 / 1500), ((1500, 2250), 2, 0.3),
                                ((333, 211), 3, 0.5)]:
        assert amg.generate_crop_boxes(size, layers, ratio) == \
            ref.generate_crop_boxes(size, layers, ratio)


def _random_masks(rng, n=12, h=23, w=31):
    masks = rng.random((n, h, w)) > 0.7
    masks[0] = False  # empty
    masks[1] = True  # full
    masks[2, 5:9, 7:20] = True
    return masks


def test_mask_statistics():
    rng = np.random.default_rng(0)
    masks = _random_masks(rng)
    np.testing.assert_array_equal(np.asarray(amg.batched_mask_to_box(masks)),
                                  ref.batched_mask_to_box(torch.from_numpy(masks)).numpy())
    logits = rng.normal(0, 2, size=(5, 3, 40, 50)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(amg.calculate_stability_score(logits, 0.0, 1.0)),
        ref.calculate_stability_score(torch.from_numpy(logits), 0.0, 1.0).numpy(), rtol=1e-6)
    boxes = rng.integers(0, 60, size=(30, 4))
    crop, orig = [10, 20, 70, 80], [0, 0, 100, 90]
    np.testing.assert_array_equal(
        amg.is_box_near_crop_edge(boxes, crop, orig),
        ref.is_box_near_crop_edge(torch.from_numpy(boxes), crop, orig).numpy())
    np.testing.assert_array_equal(
        amg.uncrop_masks(masks, [3, 4, 34, 27], 40, 50),
        ref.uncrop_masks(torch.from_numpy(masks), [3, 4, 34, 27], 40, 50).numpy())


def test_rle_round_trip_and_coco():
    masks = _random_masks(np.random.default_rng(1))
    got, want = amg.mask_to_rle(masks), ref.mask_to_rle_pytorch(torch.from_numpy(masks))
    assert got == want
    assert amg.mask_to_rle(masks[:0]) == []
    for rle, mask in zip(got, masks, strict=True):
        np.testing.assert_array_equal(amg.rle_to_mask(rle), mask)
        np.testing.assert_array_equal(ref.rle_to_mask(rle), mask)
        assert amg.area_from_rle(rle) == mask.sum()
        assert amg.coco_encode_rle(rle) == ref.coco_encode_rle(rle)


def test_nms_rules():
    """torchvision's rules: descending score, ties in input order, suppression only when the
    IoU is strictly above the threshold, zero-area boxes never suppressed."""
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30],
                      [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 10, 5]], np.float32)
    scores = np.array([0.5, 0.9, 0.9, 0.1, 0.2, 0.3, 0.95], np.float32)
    # box 6 has IoU 0.5 with boxes 0 and 1 and 45 / 105 with box 2; boxes 1 and 2: 90 / 110
    np.testing.assert_array_equal(amg.nms(boxes, scores, 0.5), [6, 1, 5, 4, 3])
    np.testing.assert_array_equal(amg.nms(boxes, scores, 0.49), [6, 2, 5, 4, 3])
    np.testing.assert_array_equal(amg.nms(boxes, scores, 0.4), [6, 5, 4, 3])
    np.testing.assert_array_equal(amg.nms(boxes, scores, 0.9), [6, 1, 2, 5, 4, 3])
    categories = np.array([0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(amg.batched_nms(boxes, scores, categories, 0.5),
                                  [6, 1, 2, 5, 4, 3])


def test_nms_matches_stand_in_on_random_boxes():
    from torchvision.ops.boxes import batched_nms

    rng = np.random.default_rng(2)
    lo = rng.integers(0, 50, size=(300, 2))
    boxes = np.concatenate([lo, lo + rng.integers(0, 30, size=(300, 2))], 1).astype(np.float32)
    scores = rng.integers(0, 20, size=300).astype(np.float32) / 20  # many ties
    for threshold in (0.3, 0.7):
        np.testing.assert_array_equal(
            amg.batched_nms(boxes, scores, np.zeros(300), threshold),
            batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.zeros(300),
                        threshold).numpy())


def test_remove_small_regions():
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # a 1-pixel hole
    mask[15:17, 15:17] = True  # a 4-pixel island
    mask[12, 12] = True  # touches the square diagonally: part of it (8-connected)
    filled, changed = amg.remove_small_regions(mask, 3, "holes")
    assert changed and filled[5, 5] and filled.sum() == mask.sum() + 1
    cleaned, changed = amg.remove_small_regions(mask, 5, "islands")
    assert changed and not cleaned[15:17, 15:17].any() and cleaned[12, 12]
    same, changed = amg.remove_small_regions(mask, 1, "islands")
    assert not changed and same is mask
    tiny = np.zeros((10, 10), bool)
    tiny[1, 1] = True
    tiny[5:7, 5:7] = True
    kept, changed = amg.remove_small_regions(tiny, 50, "islands")  # all small: keep largest
    assert changed and kept.sum() == 4 and kept[5:7, 5:7].all()


def test_sam_everything_command(blocky, tmp_path, capsys):
    """`vrp-sam sam-everything`: PNG masks + metadata.csv + overlay, or one COCO-RLE JSON;
    both hold the generator's masks; a bad image fails before anything is written."""
    import json

    from PIL import Image
    from pycocotools import mask as mask_utils

    from vrp_sam_jax.cli import main

    _, torch_model, _ = blocky
    checkpoint = tmp_path / "sam_tiny.pth"
    torch.save(torch_model.state_dict(), checkpoint)
    Image.fromarray(_scene()).save(tmp_path / "scene.png")
    common = ["--checkpoint", str(checkpoint), "--image", str(tmp_path / "scene.png"),
              "--points-per-side", "6", "--pred-iou-thresh", "0",
              "--stability-score-thresh", "0", "--quiet"]
    out = tmp_path / "out"
    assert main(["sam-everything", *common, "--output-dir", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip())
    folder = out / "scene"
    assert summary["output"] == str(folder) and summary["masks"] > 0
    pngs = sorted(folder.glob("[0-9]*.png"), key=lambda p: int(p.stem))
    rows = (folder / "metadata.csv").read_text().splitlines()
    assert len(pngs) == summary["masks"] == len(rows) - 1
    assert rows[0].startswith("id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x")
    overlay = np.asarray(Image.open(folder / "overlay.png"))
    assert overlay.shape == (96, 128, 3) and not np.array_equal(overlay, _scene())

    assert main(["sam-everything", *common, "--output-dir", str(out), "--format",
                 "coco-rle"]) == 0
    records = json.loads((out / "scene.json").read_text())
    assert (out / "scene_overlay.png").is_file() and len(records) == len(pngs)
    for record, png, row in zip(records, pngs, rows[1:], strict=True):
        mask = mask_utils.decode(record["segmentation"]).astype(bool)
        np.testing.assert_array_equal(mask, np.asarray(Image.open(png)) > 0)
        assert int(row.split(",")[1]) == record["area"] == mask.sum()
    assert not list(out.glob(".*partial*"))

    (tmp_path / "broken.png").write_bytes(b"not a png")
    fresh = tmp_path / "fresh"
    assert main(["sam-everything", *common, "--image", str(tmp_path / "broken.png"),
                 "--output-dir", str(fresh)]) == 2
    assert "broken.png" in capsys.readouterr().err and not fresh.exists()


def _sam2_models(directory):
    """The toy SAM 2 drawn as `_torch_model` draws SAM (blocky upscaling, scaled
    hypernetworks; the high-res features, which would smooth the blocks, scaled down), official
    and ours (through its `.pt` file)."""
    from torch_sam2 import build_torch_sam2, save_official_checkpoint

    model = build_torch_sam2(sam_port.get_sam2_config("sam2.1_toy"), seed=6)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("sam_mask_decoder.output_upscaling") and p.ndim == 4:
                p.copy_(p.mean((2, 3), keepdim=True).expand_as(p))
            if name.startswith("sam_mask_decoder.conv_s"):
                p.mul_(0.05)
            if name.startswith("sam_mask_decoder.output_hypernetworks_mlps") and \
                    name.endswith("layers.2.weight"):
                p.mul_(300.0)
    path = save_official_checkpoint(model, directory / "sam2.1_toy.pt")
    return model, sam_port.load_sam(path)


@pytest.mark.parametrize("settings", ["whole", "m2m", "single mask", "small regions"])
def test_sam2_generator_parity(tmp_path, settings, monkeypatch):
    """`SAM2AutomaticMaskGenerator` against `sam2`'s: as it comes; with the mask-to-mask
    refinement; one mask per point; holes and sprinkles filled (`min_mask_region_area`, the
    official's connected components served by scipy). The crop layers' code is SAM's."""
    import sam2.utils.misc
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as Official
    from torch_sam2 import connected_components

    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", connected_components)

    torch_model, ours = _sam2_models(tmp_path)
    kwargs = dict(points_per_side=6, points_per_batch=16, pred_iou_thresh=0.0,
                  stability_score_thresh=0.0)
    # (this draw's refined and single-token masks nearly all span the image: NMS off keeps
    # them apart)
    kwargs.update({"whole": {}, "single mask": dict(multimask_output=False, box_nms_thresh=1.0),
                   "m2m": dict(use_m2m=True, box_nms_thresh=1.0),
                   "small regions": dict(min_mask_region_area=40)}[settings])
    image = _scene()
    official = Official(torch_model, **kwargs)
    s = torch_model.image_size // 16  # the official predictor assumes 1024 inputs
    official.predictor._bb_feat_sizes = [(4 * s, 4 * s), (2 * s, 2 * s), (s, s)]
    with torch.no_grad():
        reference = official.generate(image)
    got = sam_port.SAM2AutomaticMaskGenerator(ours, **kwargs).generate(image)
    _match(reference, got)
    if settings == "small regions":  # the filling changed masks
        plain = sam_port.SAM2AutomaticMaskGenerator(
            ours, **{**kwargs, "min_mask_region_area": 0}).generate(image)
        assert sorted(r["area"] for r in plain) != sorted(r["area"] for r in got)
    nonempty = [r for r in reference if r["area"]]
    assert len(nonempty) >= 5
    if settings in ("whole", "small regions"):
        assert len({tuple(r["bbox"]) for r in nonempty}) >= 3
