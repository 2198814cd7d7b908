"""One loader for every model source, and the way back out: a trained run flows into
`predict`, `evaluate` and `export`; the release's `best_model.pt` round-trips through our
directory; a trained ResNet-50 run exported in the release's layout loads strictly into the
PyTorch reference and gives our logits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from commands import predict_argv
from PIL import Image
from torch_vrp import TorchVRPEncoder, TorchVRPSam, randomize_

from vrp_sam_jax import model_io
from vrp_sam_jax.cli import main
from vrp_sam_jax.data import toy_benchmark
from vrp_sam_jax.errors import CheckpointError, InputError
from vrp_sam_jax.inference import VRPSamPredictor
from vrp_sam_jax.transforms.conditions import rasterize_boxes
from vrp_sam_jax.transforms.preprocess import prepare_image

LOGIT_TOL = 1e-3


def _toy_files(d: Path) -> dict[str, Path]:
    """A toy reference with its mask, and two targets (one of another size)."""
    image, labels = toy_benchmark.render(toy_benchmark.image_names("val")[0])
    paths = {"ref": d / "ref.png", "mask": d / "ref_mask.png", "t1": d / "t1.png",
             "t2": d / "t2.png"}
    Image.fromarray(image).save(paths["ref"])
    Image.fromarray(((labels > 0) * 255).astype(np.uint8)).save(paths["mask"])
    Image.fromarray(toy_benchmark.render(toy_benchmark.image_names("val")[1])[0]).save(paths["t1"])
    third = toy_benchmark.render(toy_benchmark.image_names("val")[2])[0]
    Image.fromarray(third).resize((90, 70)).save(paths["t2"])
    return paths


def _predict(source: Path, paths: dict, out: Path, *extra: str) -> dict:
    assert main(predict_argv(source, None, out, "--reference", str(paths["ref"]),
                             "--reference-mask", str(paths["mask"]), str(paths["t1"]),
                             str(paths["t2"]), "--save-logits", *extra)) == 0
    return {name: (np.load(out / f"{name}_logits.npy"),
                   np.asarray(Image.open(out / f"{name}.png"))) for name in ("t1", "t2")}


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_trained_run_flows_into_predict_evaluate_and_export(toy_run, tmp_path, capsys):
    paths = _toy_files(tmp_path)
    # predict straight from the work directory: SAM comes from the run itself
    from_run = _predict(toy_run, paths, tmp_path / "run_out")
    origin = _last_json(capsys)["model"]
    best = model_io.load(toy_run).info["step"]
    assert origin["encoder"] == f"{toy_run}/best/{best}"
    # exported: a self-contained directory gives the same masks and logits
    assert main(["export", "--checkpoint", str(toy_run), "--output",
                 str(tmp_path / "exported")]) == 0
    assert _last_json(capsys)["format"] == "jax"
    script = Path(__file__).resolve().parent / "scripts" / "load_without_torch.py"
    loaded = subprocess.run([sys.executable, str(script), "vrp", str(tmp_path / "exported")],
                            capture_output=True, text=True)
    assert loaded.stdout.strip() == "ok", loaded.stderr[-2000:]  # no PyTorch needed
    from_export = _predict(tmp_path / "exported", paths, tmp_path / "export_out")
    capsys.readouterr()
    for name in ("t1", "t2"):
        np.testing.assert_array_equal(from_run[name][0], from_export[name][0])
        np.testing.assert_array_equal(from_run[name][1], from_export[name][1])
        assert from_run[name][0].std() > 0
    assert from_run["t2"][1].shape == (70, 90)
    # evaluate the work directory (its own config) and the export: the same numbers
    common = ["--num-episodes", "8", "--figures", "0", "--quiet"]
    assert main(["evaluate", "--checkpoint", str(toy_run), "--output-dir",
                 str(tmp_path / "e1"), *common]) == 0
    assert main(["evaluate", "--config", "toy", "--checkpoint", str(tmp_path / "exported"),
                 "--output-dir", str(tmp_path / "e2"), *common]) == 0
    capsys.readouterr()
    a, b = (json.loads((tmp_path / e / "fold0.json").read_text()) for e in ("e1", "e2"))
    assert (a["miou"], a["fb_iou"], a["class_iou"]) == (b["miou"], b["fb_iou"], b["class_iou"])
    assert a["episodes"] == 8 and a["model"]["kind"] == "run" and b["model"]["kind"] == "converted"


def test_which_checkpoint_of_a_run(toy_run, capsys):
    latest = model_io.load(toy_run, which="latest")
    step = model_io.load(toy_run, which=latest.info["step"])
    assert step.info["step"] == latest.info["step"] == 4
    for a, b in zip(jax_leaves(latest.params), jax_leaves(step.params), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match=r"no checkpoint 3; there are steps \[4\]"):
        model_io.load(toy_run, which=3)
    with pytest.raises(InputError, match="work directories only"):
        model_io.load(toy_run / "config.json", which="latest")
    with pytest.raises(CheckpointError, match="holds a resnet_tiny backbone, but resnet50"):
        model_io.load(toy_run, backbone="resnet50")
    assert not model_io.needs_sam(toy_run)


def jax_leaves(tree) -> list[np.ndarray]:
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_release_checkpoint_round_trips_through_our_directory(tmp_path, capsys):
    """best_model.pt -> convert-vrp -> export --format release gives back the release's keys,
    shapes and values exactly, with no SAM file anywhere: the release never holds SAM."""
    encoder = randomize_(TorchVRPEncoder("resnet_tiny", hidden_dim=32), seed=3)
    original = {k: torch.from_numpy(v) for k, v in encoder.state_dict_release().items()}
    torch.save(original, tmp_path / "best_model.pt")
    assert main(["convert-vrp", "--checkpoint", str(tmp_path / "best_model.pt"), "--output",
                 str(tmp_path / "ours")]) == 0
    assert model_io.needs_sam(tmp_path / "ours")
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(tmp_path / "ours"), "--format", "release",
                 "--output", str(tmp_path / "sub" / ".." / "back")]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == str(tmp_path / "back" /
                                                                "best_model.pt")
    back = torch.load(tmp_path / "back" / "best_model.pt", weights_only=True)
    assert list(back) == list(original)  # the same keys, in PyTorch's order
    for key, value in original.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
        assert torch.equal(back[key], value), key
    # an existing output is refused, not overwritten
    assert main(["export", "--checkpoint", str(tmp_path / "ours"), "--format", "release",
                 "--output", str(tmp_path / "back")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_sam_kept_separate_by_path_and_hash(tiny_sam, tmp_path, capsys):
    sam_path, _ = tiny_sam
    encoder = randomize_(TorchVRPEncoder("resnet_tiny", hidden_dim=32), seed=4)
    torch.save({k: torch.from_numpy(v) for k, v in encoder.state_dict_release().items()},
               tmp_path / "best_model.pt")
    copy = tmp_path / "sam.pth"
    copy.write_bytes(sam_path.read_bytes())
    assert main(["export", "--checkpoint", str(tmp_path / "best_model.pt"), "--sam-checkpoint",
                 str(copy), "--keep-sam-separate", "--output", str(tmp_path / "sep")]) == 0
    capsys.readouterr()
    meta = json.loads((tmp_path / "sep" / "vrp.json").read_text())
    assert meta["sam"]["file"] == str(copy) and len(meta["sam"]["sha256"]) == 64
    assert not (tmp_path / "sep" / "sam").exists()
    model = model_io.load(tmp_path / "sep")  # no SAM given: the pointer is followed
    assert model.origin["sam"] == str(copy) and model.sam_file == str(copy)
    copy.write_bytes(copy.read_bytes()[:-8] + b"tampered")
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        model_io.load(tmp_path / "sep")
    copy.unlink()
    assert model_io.needs_sam(tmp_path / "sep")
    with pytest.raises(CheckpointError, match="which is not there"):
        model_io.load(tmp_path / "sep")


def test_resnet50_run_exported_for_the_release_loads_strictly_into_pytorch(tiny_sam, tmp_path,
                                                                           capsys):
    """A ResNet-50 VRP-SAM trained here (two steps, VRP encoder only, SAM and backbone from
    their PyTorch files) -> `export --format release` -> the PyTorch reference encoder loads it
    with `strict=True` and its logits equal ours."""
    sam_path, torch_sam = tiny_sam
    start = randomize_(TorchVRPEncoder("resnet50", hidden_dim=32, num_queries=16), seed=6)
    torch.save(start.backbone_net.state_dict(), tmp_path / "resnet50_v2.pth")  # PSPNet layout
    run = tmp_path / "run"
    assert main(["train", "--config", "toy", "--workdir", str(run), "--quiet",
                 "--config.model.backbone=resnet50", "--config.init.random=False",
                 f"--config.init.sam_checkpoint={sam_path}",
                 f"--config.init.backbone_checkpoint={tmp_path / 'resnet50_v2.pth'}",
                 "--config.train.trainable=encoder", "--config.model.image_size=64",
                 "--config.train.epochs=1", "--config.train.steps_per_epoch=2",
                 "--config.data.val_episodes=4", "--config.log.every_steps=1"]) == 0
    assert main(["export", "--checkpoint", str(run), "--format", "release", "--output",
                 str(tmp_path / "release.pt")]) == 0
    capsys.readouterr()
    state = torch.load(tmp_path / "release.pt", weights_only=True)
    assert all(k.startswith("module.") for k in state)
    wrapper = torch.nn.Module()
    wrapper.module = TorchVRPEncoder("resnet50", hidden_dim=32, num_queries=16)
    wrapper.load_state_dict(state, strict=True)
    reference = wrapper.module.eval()
    # the frozen backbone is the file it started from; the encoder moved
    for key, value in start.backbone_net.state_dict().items():
        if key.startswith("layer1.") and not key.endswith("num_batches_tracked"):
            assert torch.equal(reference.state_dict()[key], value), key
    assert not torch.equal(reference.merge_1[0].weight, start.merge_1[0].weight)

    rng = np.random.default_rng(7)
    ref_image = rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)
    target = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    prompt = rasterize_boxes([(20, 10, 70, 60)], (80, 100), 64)
    predictor = VRPSamPredictor(model_io.load(run))
    predictor.set_references([ref_image], [prompt])
    _, ours = predictor.predict(target)
    ref, tgt = (torch.from_numpy(prepare_image(x, 64)).permute(2, 0, 1) for x in (ref_image,
                                                                                  target))
    with torch.no_grad():
        want = TorchVRPSam(reference, torch_sam, image_size=64).eval()(
            tgt[None], ref[None, None], torch.from_numpy(prompt)[None, None]).numpy()[0]
    assert np.abs(want).max() > 1e-2
    print(f"release export: max abs logit diff {np.abs(ours - want).max():.1e}, "
          f"max |logit| {np.abs(want).max():.3f}")
    np.testing.assert_allclose(ours, want, rtol=0, atol=LOGIT_TOL)

    # the work directory moved (to Drive, say) without the files it was trained from: it
    # carries its backbone, and SAM is given again (the notebook's path)
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, moved)
    (tmp_path / "resnet50_v2.pth").unlink()
    sam_copy = tmp_path / "elsewhere" / "sam.pth"
    shutil.copy(sam_path, sam_copy)
    assert not model_io.needs_sam(moved)
    config = json.loads((moved / "config.json").read_text())
    config["init"]["sam_checkpoint"] = str(tmp_path / "gone.pth")  # as on another machine
    (moved / "config.json").write_text(json.dumps(config))
    assert model_io.needs_sam(moved)
    with pytest.raises(CheckpointError, match="gone.pth"):
        model_io.load(moved)
    again = model_io.load(moved, sam=sam_copy)
    assert again.origin["sam"] == str(sam_copy)
    assert again.origin["backbone"].startswith(f"{moved}/backbone")
    predictor = VRPSamPredictor(again)
    predictor.set_references([ref_image], [prompt])
    np.testing.assert_array_equal(predictor.predict(target)[1], ours)
