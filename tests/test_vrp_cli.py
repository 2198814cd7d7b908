"""`vrp-sam convert-vrp`, `convert-backbone` and `predict` on files the tests write: tiny
SAM and tiny backbone in the official/release layouts, images of several sizes."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
import torch
from commands import predict_argv
from PIL import Image
from torch_vrp import TorchVRPEncoder, TorchVRPSam, randomize_

from vrp_sam_jax.cli import main
from vrp_sam_jax.storage.image_io import read_mask
from vrp_sam_jax.transforms.conditions import rasterize_boxes, rasterize_points, rasterize_scribble
from vrp_sam_jax.transforms.preprocess import logits_to_size, prepare_image, resize_mask_nearest

LOGIT_TOL = 1e-3


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_sam):
    d = tmp_path_factory.mktemp("vrp_cli")
    enc = randomize_(TorchVRPEncoder("resnet_tiny", hidden_dim=32), seed=21)
    sam_path, sam = tiny_sam
    torch.save({k: torch.from_numpy(v) for k, v in enc.state_dict_release().items()},
               d / "best_model.pt")
    shutil.copy(sam_path, d / "sam_tiny.pth")
    torch.save(enc.backbone_net.state_dict(), d / "resnet_tiny_v2.pth")
    rng = np.random.default_rng(0)
    paths = {}
    for name, (w, h) in {"ref": (200, 160), "ref2": (120, 120), "t1": (150, 120),
                         "t2": (90, 100)}.items():
        paths[name] = d / f"{name}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(paths[name])
    mask = np.zeros((160, 200), np.uint8)
    mask[40:120, 50:150] = 255
    Image.fromarray(mask).save(d / "ref_mask.png")
    Image.fromarray(np.zeros((160, 200), np.uint8)).save(d / "empty.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(d / "small.png")
    (d / "corrupt.jpg").write_bytes(b"not a jpeg")
    return d, paths, TorchVRPSam(enc, sam, image_size=512).eval()


def _predict(d, paths, *extra, out="out"):
    return main(predict_argv(d / "best_model.pt", d / "sam_tiny.pth", d / out, *extra))


def test_predict_box_matches_reference(files, capsys):
    d, paths, torch_model = files
    rc = _predict(d, paths, "--reference", str(paths["ref"]), "--reference-box",
                  "50,40,150,120", str(paths["t1"]), str(paths["t2"]), "--save-logits")
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["shots"] == 1 and len(result["outputs"]) == 2
    for name, (w, h) in (("t1", (150, 120)), ("t2", (90, 100))):
        assert Image.open(d / "out" / f"{name}.png").size == (w, h)
        assert (d / "out" / f"{name}_overlay.png").is_file()
    logits = np.load(d / "out" / "t1_logits.npy")
    want = _torch_logits(torch_model, np.asarray(Image.open(paths["ref"])),
                         np.asarray(Image.open(paths["t1"])),
                         rasterize_boxes([(50, 40, 150, 120)], (160, 200), 512))
    assert logits.shape == (512, 512)
    np.testing.assert_allclose(logits, want, rtol=0, atol=LOGIT_TOL)


def _torch_logits(torch_model, reference: np.ndarray, target: np.ndarray,
                  prompt: np.ndarray) -> np.ndarray:
    ref, tgt = (torch.from_numpy(prepare_image(x, 512)) for x in (reference, target))
    with torch.no_grad():
        return torch_model(tgt.permute(2, 0, 1)[None], ref.permute(2, 0, 1)[None, None],
                           torch.from_numpy(prompt)[None, None]).numpy()[0]


def _expected_prompt(kind: str, d) -> np.ndarray:
    drawn = read_mask(d / "ref_mask.png")
    if kind == "mask":
        return resize_mask_nearest(drawn, 512).astype(np.float32)
    if kind == "points":
        return rasterize_points([(60, 50), (100, 100)], (160, 200), 512)
    return rasterize_scribble(drawn, 512)


@pytest.mark.parametrize("annotation", [
    ["--reference-mask", "ref_mask.png"], ["--reference-points", "60,50;100,100"],
    ["--reference-scribble", "ref_mask.png"]])
def test_predict_annotation_kinds(files, annotation, capsys):
    """Each annotation kind becomes the prompt mask it should (checked through the PyTorch
    reference's logits), and the written mask is those logits at the target's size."""
    d, paths, torch_model = files
    option, value = annotation
    value = str(d / value) if value.endswith(".png") else value
    out = d / f"out_{option[12:]}"
    rc = _predict(d, paths, "--reference", str(paths["ref"]), option, value, str(paths["t1"]),
                  "--save-logits", out=out.name)
    assert rc == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["outputs"][0]["target"] == str(paths["t1"])
    logits = np.load(out / "t1_logits.npy")
    want = _torch_logits(torch_model, np.asarray(Image.open(paths["ref"])),
                         np.asarray(Image.open(paths["t1"])), _expected_prompt(option[12:], d))
    np.testing.assert_allclose(logits, want, rtol=0, atol=LOGIT_TOL)
    written = np.asarray(Image.open(out / "t1.png")) > 0
    assert np.array_equal(written, logits_to_size(logits, 120, 150) > 0)  # the target's size
    # and the reference's mask wherever the measured difference cannot flip the sign (the
    # resize is a convex combination, so it never grows the difference)
    full = logits_to_size(want, 120, 150)
    decided = np.abs(full) > np.abs(logits - want).max()
    assert decided.mean() > 0.9 and 0.01 < written.mean() < 0.99
    assert np.array_equal(written[decided], full[decided] > 0)


def test_predict_k_shot_with_converted_directories(files, capsys):
    d, paths, _ = files
    assert main(["convert-vrp", "--checkpoint", str(d / "best_model.pt"), "--output",
                 str(d / "vrp_dir")]) == 0
    assert json.loads(capsys.readouterr().out)["backbone"] == "resnet_tiny"
    assert main(["convert-sam", "--checkpoint", str(d / "sam_tiny.pth"), "--output",
                 str(d / "sam_dir")]) == 0
    capsys.readouterr()
    rc = main(["predict", "--sam-checkpoint", str(d / "sam_dir"), "--vrp-checkpoint",
               str(d / "vrp_dir"), "--backbone", "resnet_tiny", "--output-dir", str(d / "k"),
               "--reference", str(paths["ref"]), "--reference-box", "50,40,150,120",
               "--reference", str(paths["ref2"]), "--reference-box", "10,10,60,90",
               str(paths["t2"]), str(paths["t2"]), "--batch-size", "1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shots"] == 2
    assert [o["mask"][-6:] for o in out["outputs"]] == ["t2.png", "_2.png"]


def test_batched_prediction_compiles_once_for_all_sizes(files):
    """`predict_many`: the reference is encoded once, targets of different original sizes go
    through one compiled program per batch size (a short last batch is padded), and the
    results equal one-at-a-time prediction."""
    from vrp_sam_jax import inference, model_io

    d, paths, _ = files
    model = model_io.load(d / "best_model.pt", sam=d / "sam_tiny.pth")
    predictor = inference.VRPSamPredictor(model)
    ref = np.asarray(Image.open(paths["ref"]))
    predictor.set_references([ref], [rasterize_boxes([(50, 40, 150, 120)], (160, 200), 512)])
    targets = [np.asarray(Image.open(paths[n])) for n in ("t1", "t2", "ref", "ref2", "t2")]
    before = inference.predict_logits._cache_size()
    batched = list(predictor.predict_many(targets, batch_size=3))  # 2 calls, last one padded
    assert inference.predict_logits._cache_size() == before + 1
    assert len(batched) == len(targets)
    for target, (mask, logits) in zip(targets, batched, strict=True):
        single_mask, single_logits = predictor.predict(target)
        assert mask.shape == target.shape[:2] and logits.shape == (512, 512)
        np.testing.assert_allclose(logits, single_logits, rtol=0, atol=1e-5)
        assert np.array_equal(mask, single_mask)
    with pytest.raises(ValueError, match="batch_size"):
        next(predictor.predict_many(targets, batch_size=0))


def test_predict_in_bfloat16(files, capsys):
    """`--compute-dtype bfloat16`: the frozen parts in bf16, masks close to float32's."""
    d, paths, _ = files
    args = ["--reference", str(paths["ref"]), "--reference-box", "50,40,150,120",
            str(paths["t1"]), "--save-logits"]
    assert _predict(d, paths, *args, "--compute-dtype", "bfloat16", out="bf16") == 0
    assert _predict(d, paths, *args, out="f32") == 0
    capsys.readouterr()
    low, full = (np.load(d / out / "t1_logits.npy") for out in ("bf16", "f32"))
    assert 0 < np.abs(low - full).max() < 0.05 * np.abs(full).max()


def test_convert_backbone(files, capsys):
    d, _, _ = files
    assert main(["convert-backbone", "--checkpoint", str(d / "resnet_tiny_v2.pth"),
                 "--output", str(d / "bb")]) == 0
    assert json.loads(capsys.readouterr().out)["backbone"] == "resnet_tiny"
    from vrp_sam_jax.weights.backbones import load_backbone
    from vrp_sam_jax.weights.release import read_release

    name, params = load_backbone(d / "bb", "resnet_tiny")
    release = read_release(d / "best_model.pt").params["backbone"]
    assert name == "resnet_tiny"
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(release), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case,message", [
    ("missing_ref", "no such image file"),
    ("corrupt_target", "corrupt.jpg: not a readable image"),
    ("empty_mask", "empty.png: empty reference annotation"),
    ("box_outside", "ref.jpg (box): box (500.0, 500.0, 600.0, 600.0) lies outside the "
                    "200x160 image"),
    ("mask_size", "small.png: annotation is 10x10 but reference"),
    ("count", "1 reference image(s) but 2 box annotation(s)"),
    ("sam_as_vrp", "not a VRP-SAM checkpoint"),
    ("vrp_as_sam", "not a Segment Anything checkpoint"),
    ("wrong_backbone", "holds a resnet_tiny backbone, but --backbone resnet50"),
])
def test_predict_errors(files, case, message, capsys):
    d, paths, _ = files
    ref, t1 = str(paths["ref"]), str(paths["t1"])
    sam, vrp = str(d / "sam_tiny.pth"), str(d / "best_model.pt")
    args = {
        "missing_ref": ["--reference", str(d / "nope.jpg"), "--reference-box", "1,1,5,5", t1],
        "corrupt_target": ["--reference", ref, "--reference-box", "1,1,50,50",
                           str(d / "corrupt.jpg")],
        "empty_mask": ["--reference", ref, "--reference-mask", str(d / "empty.png"), t1],
        "box_outside": ["--reference", ref, "--reference-box", "500,500,600,600", t1],
        "mask_size": ["--reference", ref, "--reference-mask", str(d / "small.png"), t1],
        "count": ["--reference", ref, "--reference-box", "1,1,5,5", "--reference-box",
                  "1,1,5,5", t1],
        "sam_as_vrp": ["--reference", ref, "--reference-box", "1,1,50,50", t1],
        "vrp_as_sam": ["--reference", ref, "--reference-box", "1,1,50,50", t1],
        "wrong_backbone": ["--reference", ref, "--reference-box", "1,1,50,50", t1,
                           "--backbone", "resnet50"],
    }[case]
    if case == "sam_as_vrp":
        vrp = sam
    if case == "vrp_as_sam":
        sam = str(d / "best_model.pt")
    rc = main(["predict", "--sam-checkpoint", sam, "--vrp-checkpoint", vrp, "--output-dir",
               str(d / "err"), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1
