"""Careless and hostile input: every case ends with exit status 2 and one line naming the file
or the argument and the problem, no traceback, and nothing written half (or at all)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
from commands import SMALL_TOY_TRAINING, predict_argv
from PIL import Image
from torch_vrp import TorchVRPEncoder, randomize_

import sam_port
from vrp_sam_jax.cli import main
from vrp_sam_jax.storage.files import write_text_atomic
from vrp_sam_jax.storage.image_io import read_image, read_mask

TOY = ["--config", "toy", "--quiet", "--config.model.image_size=64",
       "--config.train.epochs=1", "--config.train.steps_per_epoch=2",
       "--config.data.val_episodes=4"]


def _fails(capsys, argv: list[str], *fragments: str) -> str:
    try:
        code = main(argv)
    except SystemExit as e:  # a usage error, from the argument parser
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_sam):
    d = tmp_path_factory.mktemp("hostile")
    encoder = randomize_(TorchVRPEncoder("resnet_tiny", hidden_dim=32), seed=31)
    torch.save({k: torch.from_numpy(v) for k, v in encoder.state_dict_release().items()},
               d / "best_model.pt")
    shutil.copy(tiny_sam[0], d / "sam.pth")
    rng = np.random.default_rng(3)
    for name, (w, h) in {"ref": (120, 80), "t1": (64, 48), "t2": (50, 70)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(d / f"{name}.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG not really")
    return d


def _predict(d: Path, out: Path, *args: str) -> list[str]:
    return predict_argv(d / "best_model.pt", d / "sam.pth", out, *args)


@pytest.mark.parametrize("annotation,fragments", [
    (["--reference-box=-50,10,-10,40"], ["ref.png (box)", "lies outside the 120x80 image"]),
    (["--reference-box=10,-90,60,-20"], ["lies outside the 120x80 image"]),
    (["--reference-points", "500,10"], ["ref.png (point)", "lies outside"]),
    (["--reference-points", "nan,5"], ["--reference-points", "finite"]),
    (["--reference-box", "1,2,inf,4"], ["--reference-box", "finite"]),
])
def test_annotations_outside_the_reference_are_refused(files, tmp_path, capsys, annotation,
                                                       fragments):
    out = tmp_path / "out"
    _fails(capsys, _predict(files, out, "--reference", str(files / "ref.png"), *annotation,
                            str(files / "t1.png")), *fragments)
    assert not out.exists()


def test_a_corrupt_target_stops_everything_before_any_output(files, tmp_path, capsys):
    out = tmp_path / "out"
    _fails(capsys, _predict(files, out, "--reference", str(files / "ref.png"),
                            "--reference-box", "10,10,60,60", str(files / "t1.png"),
                            str(files / "t2.png"), str(files / "corrupt.png")),
           "corrupt.png: not a readable image")
    assert not out.exists()


def test_an_output_directory_that_is_a_file(files, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    _fails(capsys, _predict(files, tmp_path / "taken", "--reference", str(files / "ref.png"),
                            "--reference-box", "10,10,60,60", str(files / "t1.png")),
           "taken: exists and is not a directory")


def test_clashing_target_names_never_overwrite(files, tmp_path, capsys):
    sizes = {"a/x.png": (30, 20), "b/x.png": (40, 25), "x_overlay.png": (50, 35),
             "x.png": (20, 45)}
    rng = np.random.default_rng(4)
    for name, (w, h) in sizes.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    out = tmp_path / "out"
    assert main(_predict(files, out, "--reference", str(files / "ref.png"), "--reference-box",
                         "10,10,60,60", *(str(tmp_path / n) for n in sizes))) == 0
    written = json.loads(capsys.readouterr().out)["outputs"]
    masks = [Path(o["mask"]) for o in written]
    assert len(set(masks)) == 4 and len(list(out.iterdir())) == 8  # masks and overlays
    for (w, h), mask in zip(sizes.values(), masks, strict=True):
        assert Image.open(mask).size == (w, h)
        assert Image.open(mask.with_name(mask.stem + "_overlay.png")).size == (w, h)
    assert not [p for p in out.iterdir() if "partial" in p.name]


def _exif_jpeg(path: Path, image: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(image).save(path, exif=exif.tobytes())


def test_phone_photos_are_read_as_people_see_them(files, tmp_path, capsys):
    """EXIF orientation 6 (rotate 90): the stored 60x40 pixels are a 40x60 photo."""
    rng = np.random.default_rng(5)
    _exif_jpeg(tmp_path / "ref.jpg", rng.integers(0, 255, (40, 60, 3), dtype=np.uint8), 6)
    _exif_jpeg(tmp_path / "target.jpg", rng.integers(0, 255, (40, 60, 3), dtype=np.uint8), 6)
    assert read_image(tmp_path / "ref.jpg").shape == (60, 40, 3)
    drawn = np.zeros((60, 40), np.uint8)  # a mask drawn on the photo as displayed
    drawn[10:50, 5:30] = 255
    Image.fromarray(drawn).save(tmp_path / "ref_mask.png")
    out = tmp_path / "out"
    assert main(_predict(files, out, "--reference", str(tmp_path / "ref.jpg"),
                         "--reference-mask", str(tmp_path / "ref_mask.png"),
                         str(tmp_path / "target.jpg"))) == 0
    capsys.readouterr()
    assert Image.open(out / "target.png").size == (40, 60)  # the displayed orientation


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 256, 30000], [65535, 128, 4096]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    image = read_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(image[..., 0], values >> 8)
    assert read_mask(tmp_path / "deep.png").tolist() == [[False, True, True], [True, True, True]]


def test_a_decompression_bomb_is_refused(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 64x48 target is "too large"
    _fails(capsys, _predict(files, tmp_path / "out", "--reference-box", "1,1,5,5",
                            "--reference", str(files / "t1.png"), str(files / "t1.png")),
           "t1.png: not a readable image")


def test_tampered_metadata_is_refused(files, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(files / "best_model.pt"), "--sam-checkpoint",
                 str(files / "sam.pth"), "--output", str(tmp_path / "exp")]) == 0
    capsys.readouterr()
    meta_path = tmp_path / "exp" / "vrp.json"
    good = json.loads(meta_path.read_text())
    args = ["--reference", str(files / "ref.png"), "--reference-box", "10,10,60,60",
            str(files / "t1.png")]
    for field, value in (("hidden_dim", "abc"), ("num_queries", 10**9), ("sam", [1])):
        meta_path.write_text(json.dumps({**good, field: value}))
        _fails(capsys, ["predict", "--vrp-checkpoint", str(tmp_path / "exp"), "--output-dir",
                        str(tmp_path / "o"), *args], "vrp.json: unreadable VRP-SAM metadata")
    meta_path.write_text(json.dumps(good))
    sam_meta = tmp_path / "exp" / "sam" / "sam.json"
    sam = json.loads(sam_meta.read_text())
    sam["config"]["image_encoder"]["depth"] = 10**6
    sam_meta.write_text(json.dumps(sam))
    _fails(capsys, ["predict", "--vrp-checkpoint", str(tmp_path / "exp"), "--output-dir",
                    str(tmp_path / "o"), *args], "sam.json: its architecture is not")
    assert not (tmp_path / "o").exists()


def test_a_legacy_pickle_gets_one_line(tmp_path, capsys):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(2), "m": torch.nn.ReLU()}, path,
               _use_new_zipfile_serialization=False)
    _fails(capsys, ["convert-sam", "--checkpoint", str(path), "--output", str(tmp_path / "o")],
           "legacy.pth: cannot read as a PyTorch checkpoint")
    cut = tmp_path / "cut.pth"
    torch.save({"w": torch.ones(1000)}, cut)
    cut.write_bytes(cut.read_bytes()[-300:])  # the end of a zip, without its start
    _fails(capsys, ["convert-sam", "--checkpoint", str(cut), "--output", str(tmp_path / "o")],
           "cut.pth: corrupt or truncated")


def test_the_readme_flow_with_relative_paths(files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("sam.pth", "best_model.pt", "ref.png", "t1.png"):
        (tmp_path / name).write_bytes((files / name).read_bytes())
    assert main(["convert-sam", "--checkpoint", "sam.pth", "--output", "sam_tiny"]) == 0
    assert main(["sam-predict", "--checkpoint", "sam_tiny", "--image", "t1.png", "--point",
                 "10,10", "--output", "out/mask.png"]) == 0
    assert main(["export", "--checkpoint", "best_model.pt", "--sam-checkpoint", "sam_tiny",
                 "--output", "vrp"]) == 0
    assert main(["predict", "--vrp-checkpoint", "vrp", "--reference", "ref.png",
                 "--reference-box", "10,10,60,60", "t1.png", "--output-dir", "pred"]) == 0
    capsys.readouterr()
    assert (tmp_path / "pred" / "t1.png").is_file() and (tmp_path / "out/mask.png").is_file()
    sam = sam_port.load_sam("sam_tiny")
    assert sam.model_type == "tiny"


@pytest.mark.parametrize("override,fragment", [
    ("--config.train.lr=-0.001", "train.lr=-0.001 must be a learning rate"),
    ("--config.data.fold=7", "data.fold=7 must be a fold"),
    ("--config.model.backbone=resnet18", "unknown backbone 'resnet18'"),
    ("--config.model.sam_type=vit_x", "unknown SAM model type 'vit_x'"),
    ("--config.model.compute_dtype=float8", "unknown compute dtype 'float8'"),
    ("--config.train.global_batch=0", "train.global_batch=0 must be"),
    ("--config.mesh.data=2", "mesh 2x1 does not match the 1 devices"),
    ("--config.train.lr.x=1", "no field 'train.lr.x'"),
    ("--config.data.condition=lasso", "data.condition='lasso' is not one of"),
    ("--config.train.trainable=sam/nothing", "train.trainable"),
    # what train would write and predict then refuse to read (converted directories' rule)
    ("--config.model.image_size=63", "image_size=63 must divide by 8"),
    ("--config.model.num_heads=3", "hidden_dim=32 must divide by num_heads=3"),
])
def test_a_bad_training_config_writes_nothing(tmp_path, capsys, override, fragment):
    workdir = tmp_path / "run"
    _fails(capsys, ["train", *TOY, "--workdir", str(workdir), override], fragment)
    assert not workdir.exists()


@pytest.mark.parametrize("args,fragment", [
    (["--shots", "0"], "--shots: expected a positive integer"),
    (["--num-episodes", "0"], "--num-episodes: expected a positive integer"),
    (["--protocol", "bogus"], "--protocol: invalid choice"),
    (["--fold", "7"], "data.fold=7 must be a fold"),
])
def test_bad_evaluation_arguments(toy_run, tmp_path, capsys, args, fragment):
    _fails(capsys, ["evaluate", "--checkpoint", str(toy_run), "--quiet", "--output-dir",
                    str(tmp_path / "e"), *args], fragment)
    assert not (tmp_path / "e").exists()


def test_resuming_with_another_learning_rate_is_refused(toy_run, capsys):
    before = (toy_run / "config.json").read_bytes()
    _fails(capsys, ["train", "--config", "toy", "--workdir", str(toy_run), "--quiet",
                    *SMALL_TOY_TRAINING, "--config.data.val_episodes=8",
                    "--config.train.lr=0.01"], "train.lr: checkpoint 0.002, config 0.01")
    assert (toy_run / "config.json").read_bytes() == before


def test_config_json_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text('{"complete": true}')

    def killed(_fd):
        raise OSError("killed")

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(OSError, match="killed"):
        write_text_atomic(path, '{"new": ' + "1" * 10000 + "}")
    assert json.loads(path.read_text()) == {"complete": True}


def test_an_image_named_like_a_flag_or_unreadable_mask(files, tmp_path, capsys):
    (tmp_path / "mask.png").write_bytes(io.BytesIO(b"GIF89a broken").getvalue())
    _fails(capsys, _predict(files, tmp_path / "out", "--reference", str(files / "ref.png"),
                            "--reference-mask", str(tmp_path / "mask.png"),
                            str(files / "t1.png")), "mask.png: not a readable mask image")


def test_outputs_never_replace_inputs_or_earlier_files(files, tmp_path, capsys):
    """Masks written into the targets' own folder would replace the photos (t1.png's mask is
    t1.png): refused, with or without --overwrite, before anything is written. An earlier
    run's outputs are replaced only with --overwrite."""
    photos = tmp_path / "A"
    photos.mkdir()
    for name in ("t1.png", "t2.png"):
        shutil.copy(files / name, photos / name)
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    args = ["--reference", str(files / "ref.png"), "--reference-box", "10,10,60,60",
            str(photos / "t1.png"), str(photos / "t2.png")]
    for extra in ([], ["--overwrite"]):
        _fails(capsys, _predict(files, photos, *args, *extra),
               "t1.png: the output would replace the input", "choose another --output-dir")
        assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    # a reference (or its mask) is an input too
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(files / "ref.png", out / "ref.png")
    _fails(capsys, _predict(files, out, "--reference", str(out / "ref.png"), "--reference-box",
                            "10,10,60,60", str(files / "ref.png")),
           "ref.png: the output would replace the input")
    # an earlier run's masks: kept unless --overwrite
    out = tmp_path / "again"
    assert main(_predict(files, out, *args)) == 0
    first = (out / "t1.png").read_bytes()
    (out / "t1.png").write_bytes(b"the user's own file")
    _fails(capsys, _predict(files, out, *args), "t1.png: exists already (and 3 other outputs)",
           "--overwrite")
    assert (out / "t1.png").read_bytes() == b"the user's own file"
    assert main(_predict(files, out, *args, "--overwrite")) == 0
    assert (out / "t1.png").read_bytes() == first
    assert sorted(p.name for p in out.iterdir()) == [
        "t1.png", "t1_overlay.png", "t2.png", "t2_overlay.png"]


def test_temporary_names_are_never_someone_elses(files, tmp_path, capsys, monkeypatch):
    """Writes go through a temporary made for this write alone: a user's `X.partial` folder
    or `.X.partial` file beside the output is left alone, and a write that fails (here: a
    full disk while the parameters are written) leaves neither half a file nor its
    temporary."""
    from sam_port import files as sam_files
    from vrp_sam_jax.storage.files import write_bytes_atomic

    for name in ("exp.partial", ".exp.partial"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mine.txt").write_text("keep me")
    assert main(["export", "--checkpoint", str(files / "best_model.pt"), "--sam-checkpoint",
                 str(files / "sam.pth"), "--output", str(tmp_path / "exp")]) == 0
    for name in ("exp.partial", ".exp.partial"):
        assert (tmp_path / name / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".exp.partial", "exp",
                                                          "exp.partial"]
    (tmp_path / ".x.bin.partial").write_text("keep me too")
    write_bytes_atomic(tmp_path / "x.bin", b"old")

    def full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sam_files.os, "replace", full)
    with pytest.raises(OSError, match="No space left"):
        write_bytes_atomic(tmp_path / "x.bin", b"new")
    assert (tmp_path / "x.bin").read_bytes() == b"old"
    assert (tmp_path / ".x.bin.partial").read_text() == "keep me too"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.bin.")
                and p.name != ".x.bin.partial"]


@pytest.mark.parametrize("content,fragment", [
    (b"[" * 100_000 + b"]" * 100_000, "(nested too deeply)"),
    (b'{"format": "\xff\xfe"}', "can't decode byte 0xff"),
])
def test_metadata_that_is_not_json_gets_one_line(files, tmp_path, capsys, content, fragment):
    """`vrp.json`, `sam.json` and a run's `config.json` that Python's parser would end in a
    RecursionError or UnicodeDecodeError traceback."""
    assert main(["export", "--checkpoint", str(files / "best_model.pt"), "--sam-checkpoint",
                 str(files / "sam.pth"), "--output", str(tmp_path / "exp")]) == 0
    capsys.readouterr()
    args = ["--reference", str(files / "ref.png"), "--reference-box", "10,10,60,60",
            str(files / "t1.png")]
    for meta in (tmp_path / "exp" / "vrp.json", tmp_path / "exp" / "sam" / "sam.json"):
        good = meta.read_bytes()
        meta.write_bytes(content)
        _fails(capsys, ["predict", "--vrp-checkpoint", str(tmp_path / "exp"), "--output-dir",
                        str(tmp_path / "o"), *args], f"{meta.name}: unreadable", fragment)
        meta.write_bytes(good)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes(content)
    _fails(capsys, ["evaluate", "--checkpoint", str(run), "--output-dir", str(tmp_path / "e")],
           "config.json: unreadable run config", fragment)
    assert not (tmp_path / "o").exists() and not (tmp_path / "e").exists()


def test_stored_weights_are_checked_before_use(files, tmp_path, capsys):
    """Flipped bytes in an exported directory's parameters, and a release checkpoint holding
    NaN: refused in one line, nothing predicted or written."""
    assert main(["export", "--checkpoint", str(files / "best_model.pt"), "--sam-checkpoint",
                 str(files / "sam.pth"), "--output", str(tmp_path / "exp")]) == 0
    capsys.readouterr()
    args = ["--reference", str(files / "ref.png"), "--reference-box", "10,10,60,60",
            str(files / "t1.png")]
    stored = max((p for p in (tmp_path / "exp" / "params").rglob("*") if p.is_file()),
                 key=lambda p: p.stat().st_size)
    data = bytearray(stored.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 400] = bytes(b ^ 0x5A for b in data[middle : middle + 400])
    stored.write_bytes(bytes(data))
    _fails(capsys, ["predict", "--vrp-checkpoint", str(tmp_path / "exp"), "--output-dir",
                    str(tmp_path / "o"), *args], str(tmp_path / "exp"))
    assert not (tmp_path / "o").exists()

    release = torch.load(files / "best_model.pt")
    name = next(k for k, v in release.items() if v.dtype == torch.float32 and v.numel() > 1)
    release[name] = torch.full_like(release[name], float("nan"))
    torch.save(release, tmp_path / "nan.pt")
    _fails(capsys, predict_argv(tmp_path / "nan.pt", files / "sam.pth", tmp_path / "o", *args),
           "nan.pt: parameter", "NaN or infinite values")
    assert not (tmp_path / "o").exists()


def test_a_run_whose_config_was_edited_is_refused(toy_run, files, tmp_path, capsys):
    """A hand-edited `num_heads` in a run's config.json would change the masks silently (the
    parameters' shapes do not depend on it): the checkpoints record the architecture."""
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    config = json.loads((run / "config.json").read_text())
    config["model"]["num_heads"] = 8
    (run / "config.json").write_text(json.dumps(config))
    _fails(capsys, ["predict", "--vrp-checkpoint", str(run), "--output-dir",
                    str(tmp_path / "o"), "--reference", str(files / "ref.png"),
                    "--reference-box", "10,10,60,60", str(files / "t1.png")],
           "written by a model of another architecture", "num_heads=4 there, 8 in config.json")
    assert not (tmp_path / "o").exists()


def test_a_foreign_checkpoint_is_refused_not_set_aside(tmp_path):
    """Resuming over checkpoints of another architecture (a copied folder) stops with the
    difference; they stay where they are. Changed arrays are damage: that checkpoint is set
    aside and the one before it used."""
    from vrp_sam_jax.errors import CheckpointMismatchError
    from vrp_sam_jax.models import VRPSamConfig
    from vrp_sam_jax.training.run_dir import DAMAGED, Checkpoints

    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.int32(3)}
    abstract = {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype)
                for k, v in state.items()}
    model = VRPSamConfig(backbone="resnet_tiny", sam_type="tiny", image_size=64)
    writer = Checkpoints(tmp_path, model, async_save=False)
    writer.save(1, state, {"step": 1})
    writer.save(2, {**state, "w": state["w"] + 1}, {"step": 2})
    writer.close()
    other = dataclasses.replace(model, num_queries=8)
    reader = Checkpoints(tmp_path, other, async_save=False)
    with pytest.raises(CheckpointMismatchError, match="num_queries=50 there, 8 in config.json"):
        reader.restore(abstract)
    reader.close()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2"]

    reader = Checkpoints(tmp_path, model, async_save=False)
    restored, _ = reader.restore(abstract)  # intact: step 2's arrays
    np.testing.assert_array_equal(restored["w"], state["w"] + 1)
    reader.close()
    # step 2's arrays no longer what was written (here: its record says other content)
    record = next(p for p in (tmp_path / "checkpoints" / "2" / "position").rglob("*")
                  if p.is_file() and b"digest" in p.read_bytes())
    text = record.read_text()
    digest = json.loads(text)["digest"]
    record.write_text(text.replace(digest, "0" * len(digest)))
    reader = Checkpoints(tmp_path, model, async_save=False)
    restored, position = reader.restore(abstract)
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert position["step"] == 1 and (tmp_path / DAMAGED / "2").is_dir()
    reader.close()


def test_two_trainings_in_one_work_directory(tmp_path, capsys):
    """A second `train` on a work directory a training holds stops in one line naming the
    holder, touching none of its files; a killed holder leaves no lock behind."""
    import subprocess
    import sys

    from vrp_sam_jax.training.run_dir import hold

    run = tmp_path / "run"
    with hold(run):
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "in_progress").write_text("the first training's")
        _fails(capsys, ["train", *TOY, "--workdir", str(run)],
               f"{run}: another training is using this work directory",
               f"pid {os.getpid()} on")
        assert (run / "checkpoints" / "in_progress").read_text() == "the first training's"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from vrp_sam_jax.training.run_dir import hold\n"
         f"with hold(Path({str(run)!r})):\n    print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match="another training is using"), hold(run):
        pass
    holder.kill()
    holder.wait()
    with hold(run):  # the kernel dropped the killed process's lock
        pass


def test_a_full_disk_while_predicting_leaves_nothing_half_written(files, tmp_path, capsys,
                                                                  monkeypatch):
    """The disk fills while the second target's mask is written (fault injection: the PNG
    writer writes part of the file, then the OS says ENOSPC): one line naming the file and
    what to do, exit 2; the first target's files are whole, no temporary remains."""
    import errno

    from vrp_sam_jax import inference

    written = []

    def write_mask(path, mask):
        if written:
            Path(path).write_bytes(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        return real(path, mask)

    real = inference.write_mask
    monkeypatch.setattr(inference, "write_mask", write_mask)
    out = tmp_path / "out"
    _fails(capsys, _predict(files, out, "--reference", str(files / "ref.png"),
                            "--reference-box", "10,10,60,60", str(files / "t1.png"),
                            str(files / "t2.png")),
           f"{out / 't2.png'}: No space left on device; free some space there")
    assert sorted(p.name for p in out.iterdir()) == ["t1.png", "t1_overlay.png"]
    assert read_mask(out / "t1.png").shape == (48, 64)


def test_a_truncated_checkpoint_file_gets_one_line(toy_run, files, tmp_path, capsys):
    """A run whose best checkpoint lost the end of its largest file (a copy cut short)."""
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    largest = max((p for p in (run / "best").rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size)
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])
    _fails(capsys, ["predict", "--vrp-checkpoint", str(run), "--output-dir",
                    str(tmp_path / "o"), "--reference", str(files / "ref.png"),
                    "--reference-box", "10,10,60,60", str(files / "t1.png")], str(run))
    assert not (tmp_path / "o").exists()


def test_a_full_disk_while_training_stops_in_one_line(tmp_path, capsys, monkeypatch):
    """The disk has no room for the first checkpoint (fault injection: the free space the
    OS reports; a real 3 MB tmpfs gives the same line). One line naming the work directory,
    no orbax thread tracebacks, no partial checkpoint."""
    from collections import namedtuple

    from vrp_sam_jax.training import run_dir

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(run_dir.shutil, "disk_usage", lambda _: usage(10**9, 10**9, 4096))
    run = tmp_path / "run"
    _fails(capsys, ["train", "--config", "toy", "--quiet", *SMALL_TOY_TRAINING,
                    "--config.data.val_episodes=8", "--workdir", str(run)],
           f"{run}: No space left on device for the next checkpoint", "MiB free",
           "the same command resumes")
    assert not [p for p in (run / "checkpoints").iterdir()]
    assert not [p for p in (run / "best").iterdir()]


def test_nothing_prints_after_the_error_line(files, tmp_path, capsys):
    """A converted directory whose vrp.json disagrees with its arrays, refused as the
    command line runs it (its own process, to its exit): orbax's cut-short reads used to
    print 'Event loop is closed' tracebacks and never-awaited warnings after the line."""
    import subprocess
    import sys

    assert main(["export", "--checkpoint", str(files / "best_model.pt"), "--sam-checkpoint",
                 str(files / "sam.pth"), "--output", str(tmp_path / "exp")]) == 0
    meta = json.loads((tmp_path / "exp" / "vrp.json").read_text())
    (tmp_path / "exp" / "vrp.json").write_text(
        json.dumps({**meta, "num_queries": meta["num_queries"] + 2}))
    for _ in range(2):  # the noise came from threads, in a race with the line
        done = subprocess.run(
            [sys.executable, "-m", "vrp_sam_jax.cli", "predict", "--vrp-checkpoint",
             str(tmp_path / "exp"), "--reference", str(files / "ref.png"), "--reference-box",
             "10,10,60,60", str(files / "t1.png"), "--output-dir", str(tmp_path / "o")],
            capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"},
            timeout=300)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-3000:]
        assert done.stderr.startswith(f"vrp-sam: error: {tmp_path / 'exp'}: cannot restore")


def test_the_demo_never_deletes_a_run_in_use(tmp_path):
    """`vrp-sam demo` trains anew in OUTPUT/run; a run there that a training holds (the app
    preparing its toy model, a `train`) is left alone."""
    from vrp_sam_jax import demo
    from vrp_sam_jax.errors import InputError
    from vrp_sam_jax.training.run_dir import hold

    run = tmp_path / "demo_out" / "run"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    with hold(run), pytest.raises(InputError, match="another training is using"):
        demo.run(tmp_path / "demo_out", SMALL_TOY_TRAINING, progress=False)
    assert (run / "config.json").read_text() == "{}"
