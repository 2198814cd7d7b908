"""The `vrp-sam` command line: conversion, prediction, the demo, and clean errors."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

import sam_port
from vrp_sam_jax.cli import main


def test_convert_and_predict(tiny_sam, tmp_path, capsys):
    ckpt, _ = tiny_sam
    out = tmp_path / "converted"
    assert main(["convert-sam", "--model-type", "tiny", "--checkpoint", str(ckpt),
                 "--output", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["model_type"] == "tiny"

    image = tmp_path / "img.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 90, 3), np.uint8)).save(image)
    mask_path = tmp_path / "out" / "mask.png"
    assert main(["sam-predict", "--checkpoint", str(out), "--image", str(image),
                 "--point", "40,30", "--negative-point", "5,5", "--box", "10,10,80,50",
                 "--output", str(mask_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    mask = np.asarray(Image.open(mask_path))
    assert mask.shape == (60, 90) and set(np.unique(mask)) <= {0, 255}
    assert report["mask_pixels"] == int((mask == 255).sum())
    assert (tmp_path / "out" / "mask_overlay.png").is_file()


def test_sam2_convert_and_predict(toy_sam2, tmp_path, capsys):
    """`convert-sam`, `sam-predict` and `sam-everything` take SAM 2's official files
    unchanged; the mask is the Python predictor's."""
    ckpt, _ = toy_sam2
    out = tmp_path / "sam2_dir"
    assert main(["convert-sam", "--checkpoint", str(ckpt), "--output", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["model_type"] == "sam2.1_toy"
    image = np.random.default_rng(1).integers(0, 255, (60, 90, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "img.png")
    for source in (ckpt, out):
        mask_path = tmp_path / f"{source.name}.png"
        assert main(["sam-predict", "--checkpoint", str(source), "--image",
                     str(tmp_path / "img.png"), "--point", "40,30", "--box", "10,10,80,50",
                     "--output", str(mask_path)]) == 0
        report = json.loads(capsys.readouterr().out)
        mask = np.asarray(Image.open(mask_path)) == 255
        assert report["mask_pixels"] == int(mask.sum())
    predictor = sam_port.SAM2ImagePredictor(sam_port.load_sam(ckpt))
    predictor.set_image(image)
    masks, _, _ = predictor.predict(point_coords=np.array([[40.0, 30.0]]),
                                    point_labels=np.array([1]),
                                    box=np.array([10.0, 10.0, 80.0, 50.0]),
                                    multimask_output=False)
    np.testing.assert_array_equal(mask, masks[0])
    assert main(["convert-sam", "--checkpoint", str(ckpt), "--model-type", "vit_b",
                 "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a sam2.1_toy SAM 2, but model type vit_b" in err and "\n" not in err
    assert main(["sam-everything", "--checkpoint", str(out), "--image",
                 str(tmp_path / "img.png"), "--output-dir", str(tmp_path / "e"),
                 "--points-per-side", "4", "--use-m2m", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["image"]
    assert (tmp_path / "e" / "img" / "metadata.csv").is_file()


def test_errors_are_one_line(tiny_sam, tmp_path, capsys):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["convert-sam", "--checkpoint", str(bad), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vrp-sam: error: ") and "broken.pth" in err and "\n" not in err

    ckpt, _ = tiny_sam
    corrupt = tmp_path / "img.png"
    corrupt.write_bytes(b"\x89PNG garbage")
    assert main(["sam-predict", "--checkpoint", str(ckpt), "--image", str(corrupt),
                 "--point", "1,1", "--output", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "img.png: not a readable image" in err and "\n" not in err
    # a point or a box outside the image, as `predict` refuses them, before SAM is loaded
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "small.png")
    for prompt, said in ((["--point", "40,5"], "point (40.0, 5.0) lies outside the 30x20"),
                         (["--point", "5,5", "--negative-point", "5,25"], "point (5.0, 25.0) lies"),
                         (["--box", "31,0,60,10"], "box (31.0, 0.0, 60.0, 10.0) lies outside")):
        assert main(["sam-predict", "--checkpoint", str(ckpt), "--image",
                     str(tmp_path / "small.png"), *prompt, "--output",
                     str(tmp_path / "m.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert f"small.png: {said}" in err and "\n" not in err, err
    assert not (tmp_path / "m.png").exists()


def test_demo(tmp_path, capsys):
    assert main(["sam-demo", "--output-dir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["checkpoint_round_trip_max_abs_diff"] == 0.0
    assert result["image"] == [480, 640] and len(result["iou_predictions"]) == 3
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    assert mask.shape == (480, 640) and result["mask_pixels"] == int((mask == 255).sum())


def test_demo_with_checkpoint(tiny_sam, tmp_path, capsys):
    ckpt, _ = tiny_sam
    assert main(["sam-demo", "--sam-checkpoint", str(ckpt), "--output-dir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["weights"] == "checkpoint" and result["model_type"] == "tiny"
    assert main(["sam-demo", "--sam-checkpoint", str(ckpt), "--model-type", "vit_b",
                 "--output-dir", str(tmp_path)]) == 2
    assert "but model type vit_b" in capsys.readouterr().err
