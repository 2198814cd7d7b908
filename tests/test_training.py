"""Training: the loss, the metric, configs, the trainable split, the step on 1 vs 8 devices,
kill-and-resume, the SAM embedding cache, and the demo's interface."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from commands import SMALL_TOY_TRAINING

from vrp_sam_jax import config as config_lib
from vrp_sam_jax.cli import main
from vrp_sam_jax.errors import InputError
from vrp_sam_jax.evaluation.metric import IoUMeter, episode_areas
from vrp_sam_jax.training import partition
from vrp_sam_jax.training.loss import bce_dice_loss
from vrp_sam_jax.transforms.preprocess import normalize_image

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def test_loss_matches_the_release_formula_in_torch():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (3, 16, 16)).astype(np.float32)
    truth = (rng.random((3, 16, 16)) > 0.7).astype(np.float32)
    lt, yt = torch.from_numpy(logits), torch.from_numpy(truth)
    bce = torch.nn.BCEWithLogitsLoss()(lt, yt)
    p = torch.sigmoid(lt).flatten(1)
    y = yt.flatten(1)
    dice = (1 - (2 * (p * y).sum(-1) + 1) / (p.sum(-1) + y.sum(-1) + 1)).sum() / 3
    expected = float(bce + dice)
    assert abs(float(bce_dice_loss(jnp.asarray(logits), jnp.asarray(truth))) - expected) < 1e-5
    # padded rows (weight 0) do not count
    padded = bce_dice_loss(jnp.asarray(np.concatenate([logits, logits[:1]])),
                           jnp.asarray(np.concatenate([truth, 1 - truth[:1]])),
                           jnp.asarray([1, 1, 1, 0]))
    assert abs(float(padded) - expected) < 1e-5


def test_metric_by_hand_with_ignore_pixels():
    pred = np.array([[[1, 1, 0], [0, 0, 0], [1, 0, 0]]])
    truth = np.array([[[1, 0, 0], [1, 0, 0], [1, 0, 0]]])
    ignore = np.array([[[0, 0, 0], [0, 0, 0], [1, 0, 0]]])
    areas = episode_areas(pred, truth, ignore)
    # foreground: pred {00, 01}, truth {00, 10} (20 ignored) -> inter 1, union 3
    # background: pred {02, 10, 11, 12, 21, 22}, truth {01, 02, 11, 12, 21, 22} -> 5, 7
    assert areas.tolist() == [[[5, 7], [1, 3]]]
    from vrp_sam_jax.evaluation.step import logit_areas

    on_device = logit_areas(jnp.where(jnp.asarray(pred) > 0, 1.0, -1.0), jnp.asarray(truth),
                             jnp.asarray(ignore))
    assert np.asarray(on_device).tolist() == areas.tolist()
    meter = IoUMeter([3, 7])
    meter.update(np.array([[[4, 7], [1, 3]], [[10, 12], [2, 2]]]), [3, 3])
    meter.update(np.array([[[5, 10], [0, 5]]]), [7])
    # class 3: (1 + 2) / (3 + 2) = 60 %, class 7: 0 %
    assert meter.class_iou() == {3: 60.0, 7: 0.0} and meter.miou() == 30.0
    # FB-IoU: background 19/29, foreground 3/10
    assert abs(meter.fb_iou() - 100 * (19 / 29 + 3 / 10) / 2) < 1e-9
    with pytest.raises(ValueError, match="not one of the evaluated classes"):
        meter.update(np.zeros((1, 2, 2), int), [5])


def test_config_files_arguments_and_overrides():
    c = config_lib.load_config(str(REPO / "configs/pascal.py") + ":vgg16,scribble",
                               ["train.lr=3e-4", "data.fold=2", "data.root=/data/x",
                                "train.trainable=encoder"])
    assert (c.model.backbone, c.data.condition, c.data.benchmark) == ("vgg16", "scribble",
                                                                      "pascal")
    assert c.train.lr == 3e-4 and c.data.fold == 2 and c.data.root == "/data/x"
    assert c.train.trainable == ("encoder",) and c.train.epochs == 100
    coco = config_lib.load_config(str(REPO / "configs/coco.py"))
    assert (coco.train.lr, coco.train.epochs, coco.model.backbone) == (1e-4, 50, "resnet50")
    with pytest.raises(InputError, match="no field 'train.nope'"):
        config_lib.apply_overrides(coco, ["train.nope=1"])
    with pytest.raises(InputError, match="data.fold"):
        config_lib.apply_overrides(coco, ["data.fold=two"])
    with pytest.raises(InputError, match="unknown backbone 'resnet18'"):
        config_lib.load_config(str(REPO / "configs/coco.py") + ":resnet18,mask")
    saved = json.loads(config_lib.to_json(coco))
    changed = config_lib.apply_overrides(config_lib.load_config(str(REPO / "configs/coco.py")),
                                         ["data.fold=3", "train.lr=1.0"])
    assert config_lib.resume_mismatches(saved, changed) == ["data.fold: checkpoint 0, config 3",
                                                            "train.lr: checkpoint 0.0001, "
                                                            "config 1.0"]


def test_partition_trains_only_what_is_named():
    params = {"backbone": {"bn": {"scale": 1, "bias": 2, "mean": 3, "var": 4}, "conv": 5},
              "encoder": {"a": 6}, "sam": {"mask_decoder": {"b": 7}, "image_encoder": {"c": 8}}}
    trainable, frozen = partition.split(params, ("encoder", "backbone", "sam/mask_decoder"))
    assert trainable == {"backbone": {"bn": {"scale": 1, "bias": 2}, "conv": 5},
                         "encoder": {"a": 6}, "sam": {"mask_decoder": {"b": 7}}}
    assert frozen == {"backbone": {"bn": {"mean": 3, "var": 4}},
                      "sam": {"image_encoder": {"c": 8}}}
    assert partition.merge(trainable, frozen) == params
    with pytest.raises(ValueError, match="match no parameter"):
        partition.split(params, ("encoder", "sam/prompt_encoder"))




def _env(**extra) -> dict:
    env = dict(os.environ)
    env.update(extra)
    return env


def test_train_step_on_8_fake_devices_equals_1_device():
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "sharded_train_step.py")], capture_output=True,
        text=True, cwd=REPO,
        # LLVM's optimisation of the generated CPU code is skipped (it is the larger part of
        # the three compilations, and runs after the SPMD partitioner has decided every
        # collective): the check is how the step is partitioned, which it leaves as it is;
        # the trainer's own programs, at the default level, train on 8 devices in
        # test_multiprocess.py.
        env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8 "
                           "--xla_backend_optimization_level=0", JAX_PLATFORMS="cpu"),
        timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["param_change"] > 1e-4, report  # the step moved the parameters
    for name in ("eight", "four_by_two"):
        assert abs(report[f"loss_{name}"] - report["loss_one"]) < 1e-5, report
        # SGD: the update is linear in the gradient, so this is the gradients' agreement
        # (the 4x2 mesh splits SAM's frozen image encoder over the model axis).
        assert report[f"param_diff_{name}"] < 1e-6, report


def test_a_different_config_is_refused_when_resuming(toy_run, tmp_path, capsys):
    """Resuming a run with other settings stops in one line listing the differences, and
    leaves the run as it was. (Killed runs resume bit for bit: test_multiprocess.py.)"""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    capsys.readouterr()
    code = main(["train", "--workdir", str(run), "--config", "toy", "--quiet",
                 *SMALL_TOY_TRAINING, "--config.data.val_episodes=8", "--config.data.fold=1"])
    err = capsys.readouterr().err
    assert code == 2 and "data.fold" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before


def test_embedding_cache_gives_the_same_step(tmp_path):
    from vrp_sam_jax.data import protocols
    from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions
    from vrp_sam_jax.data.sources import ToySource
    from vrp_sam_jax.evaluation.step import forward
    from vrp_sam_jax.models import VRPSam, init_params
    from vrp_sam_jax.training import embedding_cache

    model_config = config_lib.vrp_sam_config(config_lib.load_config("toy", ["model.image_size=64"]))
    params = init_params(model_config, 2)
    episodes = protocols.training_episodes("toy", 0, 1, 0, 3)[:4]
    names = [e.query for e in episodes]
    cache = embedding_cache.build(tmp_path, names, ToySource(), model_config, params["sam"],
                                  dtype="float32", batch=3, workers=1, progress=False)
    assert len(cache) == len(set(names))
    again = embedding_cache.build(tmp_path, names, ToySource(), model_config, params["sam"],
                                  dtype="float32", progress=False)  # nothing left to do
    assert len(list(again.directory.glob("part-*.npy"))) == 1
    # the loader threads read the cached embeddings with each episode
    batch = next(iter(EpisodeLoader(ToySource(), episodes, 4, EpisodeOptions(64, "box"),
                                    process_index=0, process_count=1,
                                    embeddings=cache.get)))
    vrp = VRPSam(model_config)
    direct = vrp.apply({"params": params}, normalize_image(batch["query_image"]),
                       method=vrp.embed_targets)
    stored = cache.get(names)
    np.testing.assert_array_equal(batch["embeddings"], stored)
    assert np.abs(stored - np.asarray(direct)).max() < 1e-5
    with_cache = forward(model_config, params, {**batch, "embeddings": stored}, True)
    without = forward(model_config, params, batch, True)
    assert np.abs(np.asarray(with_cache) - np.asarray(without)).max() < 1e-4
    # another SAM gets another key: a stale cache is never read
    other = init_params(model_config, 3)["sam"]
    assert (embedding_cache.cache_key(model_config, other, "float32")
            != embedding_cache.cache_key(model_config, params["sam"], "float32"))
    # so does a bf16-computed embedding
    bf16 = dataclasses.replace(model_config, compute_dtype="bfloat16")
    assert (embedding_cache.cache_key(bf16, params["sam"], "float32")
            != embedding_cache.cache_key(model_config, params["sam"], "float32"))


def test_demo_interface_small(tmp_path, capsys):
    code = main(["demo", "--output-dir", str(tmp_path), "--quiet", *SMALL_TOY_TRAINING,
                 "--config.data.val_episodes=8"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"miou_trained", "miou_untrained", "episodes", "seconds"} <= set(result)
    assert result["episodes"] == 8 and result["train_steps"] == 4
    assert (tmp_path / "episodes.png").is_file()


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    """A checkpoint damaged after it was written (not by a kill) is set aside with a warning;
    training resumes from the one before and ends where an undamaged run ends."""
    from vrp_sam_jax.training.run_dir import restore

    workdir = tmp_path / "run"
    args = ["train", "--workdir", str(workdir), "--config", "toy", "--quiet", *SMALL_TOY_TRAINING,
            "--config.checkpoint.every_steps=2",
            "--config.data.val_episodes=4", "--config.checkpoint.async_save=False"]
    assert main(args) == 0
    _, model = restore(workdir, "latest")
    undamaged = [np.asarray(x) for x in jax.tree.leaves(model.params)]
    for f in (workdir / "checkpoints" / "4").rglob("*"):
        if f.is_file() and "state" in f.parts:
            f.write_bytes(b"\x00garbage" * 7)
    capsys.readouterr()
    assert main(args) == 0  # resumes from step 2, trains 3 and 4 again
    err = capsys.readouterr().err
    assert "warning:" in err and "checkpoints/4 is damaged" in err
    assert (workdir / "damaged_checkpoints" / "4").is_dir()
    _, again = restore(workdir, "latest")
    assert again.info["step"] == 4
    for a, b in zip(undamaged, jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
