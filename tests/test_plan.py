"""`vrp-sam plan`: a run's steps compiled for a TPU slice and for GPUs with neither here
(libtpu and jaxlib's CUDA plugin: the `tpu` and `gpu-plan` extras), checked against an
independent compile, for the collectives a data-only mesh needs, and for a batch no chip
holds. The GPU test runs where `gpu-plan` is installed, which the test extra does not do."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from vrp_sam_jax.cli import main
from vrp_sam_jax.config import load_config, vrp_sam_config
from vrp_sam_jax.models import abstract_params, count_params, init_params
from vrp_sam_jax.runtime import sharding
from vrp_sam_jax.training import partition
from vrp_sam_jax.training import plan as planner
from vrp_sam_jax.training.embedding_cache import embedding_program, jit_embed

pytest.importorskip("libtpu", reason="the `tpu` extra (in the test extra) is not installed")

# The toy run at 64 pixels with SAM and the backbone frozen, so it has all four steps.
TOY = ["model.image_size=64", "train.trainable=encoder"]


def test_plan_reports_every_step_for_a_v5e_slice(capsys):
    assert main(["plan", "--config", "toy", "--topology", "v5e:2x2", "--json", "--quiet",
                 *[f"--config.{o}" for o in TOY]]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert captured.err == ""  # libtpu's own warnings kept off the terminal
    assert (result["chips"], result["device_kind"], result["mesh"]) == (
        4, "TPU v5 lite", {"data": 4, "model": 1})
    assert result["hbm_bytes_per_chip"] == 16 * 1024**3
    assert set(result["steps"]) == {"train", "train_cached", "eval", "cache", "predict"}
    for name, step in result["steps"].items():
        assert step["flops_per_chip"] > 0 and 0 < step["peak_bytes"] < 2**30, name
        assert step["fits"] is True, name
    # training's only traffic between chips on a data-only mesh: the trainable parameters'
    # gradients (float32) and the loss, summed; the episodes' areas (int32, 2x2 per episode)
    # gathered for the metrics; never a batch
    config = load_config("toy", TOY)
    params = abstract_params(vrp_sam_config(config))
    trainable, _ = partition.split(params, ("encoder",))
    gradient_bytes = 4 * count_params(trainable)
    for name in ("train", "train_cached"):
        traffic = result["steps"][name]["collectives"]
        assert set(traffic) <= {"all-reduce", "all-gather"}, traffic
        assert gradient_bytes <= traffic["all-reduce"]["bytes"] <= gradient_bytes + 64, traffic
        assert traffic["all-gather"]["bytes"] == 8 * 2 * 2 * 4, traffic
    # prediction runs on one chip: nothing crosses chips; it embeds all 8 targets there (the
    # cache step embeds 8 images per call over the host's 4 chips), and more
    assert result["steps"]["predict"]["collectives"] == {}
    embed_one = result["steps"]["cache"]["flops_per_chip"] / (8 / 4)
    assert result["steps"]["predict"]["flops_per_chip"] > 8 * embed_one
    assert result["estimate"]["predict_targets_per_second_at_peak"] > 0
    assert result["estimate"]["train_steps"] == 8 * 50
    assert result["estimate"]["train_seconds_at_peak"] > 0


def test_plan_for_gpus_without_a_gpu(capsys):
    """The cached train step for 4 H100s (2 episodes per GPU, as per chip of v5e:2x2),
    compiled by XLA's GPU compiler with no GPU: the same traffic between devices as for the
    TPU; FLOPs (which that compiler does not count) from one GPU's share lowered for the CPU,
    within 15% of the TPU compiler's count (measured: 8% under it; the TPU's has padding)."""
    if not planner.has_cuda_compiler():
        pytest.skip('the `gpu-plan` extra: pip install -e ".[gpu-plan]" (not in the test extra: '
                    "see pyproject.toml)")
    runs = {}
    for topology in ("v5e:2x2", "h100:4"):
        assert main(["plan", "--config", "toy", "--topology", topology, "--json", "--quiet",
                     "--steps", "train_cached", *[f"--config.{o}" for o in TOY]]) == 0
        runs[topology] = json.loads(capsys.readouterr().out)
    gpus, result = runs["h100:4"], runs["v5e:2x2"]
    assert (gpus["chips"], gpus["device_kind"], gpus["mesh"]) == (
        4, "NVIDIA H100 80GB HBM3", {"data": 4, "model": 1})
    gpu, tpu = gpus["steps"]["train_cached"], result["steps"]["train_cached"]
    assert gpu["fits"] is True and 0 < gpu["peak_bytes"] < 2**30
    assert gpu["collectives"]["all-reduce"] == tpu["collectives"]["all-reduce"]
    assert set(gpu["collectives"]) == {"all-reduce", "all-gather"}
    assert 0.85 < gpu["flops_per_chip"] / tpu["flops_per_chip"] <= 1.0
    assert gpu["bytes_accessed"] is None  # not counted for a GPU, not guessed


def test_plan_equals_an_independent_compile_and_says_what_does_not_fit():
    """The embedding pre-pass compiled here from real parameters and images, and by `plan`
    from the config alone: the same bytes, FLOPs and collectives; on a slice of 4 hosts with
    SAM split over a model axis for training, the pre-pass still runs as the cache builder
    runs it, on one host's chips, data-parallel. A batch no chip holds: fits false, with its
    bytes."""
    devices = planner.topology_devices("v5e:2x2")
    config = load_config("toy", TOY)
    model_config = vrp_sam_config(config)
    mesh = sharding.make_mesh(devices=devices)
    sam = init_params(model_config)["sam"]
    images = np.zeros((8, 64, 64, 3), np.uint8)  # the cache builder's 8 images per call

    def placed(x, where):
        return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=where)

    with planner.not_cached():  # compiled here, not read from plan's (or anyone's) cache
        independent = jit_embed(model_config, mesh, config.cache.dtype).lower(
            jax.tree.map(lambda x: placed(x, sharding.replicated(mesh)), sam),
            placed(images, sharding.batch_sharding(mesh))).compile()
    hbm = planner.CHIPS["TPU v5 lite"].hbm_bytes
    ours = planner.measure(planner.steps(config, mesh)["cache"], hbm)
    ours.pop("compile_seconds")
    assert ours == planner.analyse(independent, hbm)
    assert ours["fits"] is True and ours["flops_per_chip"] > 0
    _, builder_mesh, per_call = embedding_program(model_config, config.cache.dtype, devices)
    assert (builder_mesh.shape, per_call) == ({"data": 4, "model": 1}, 8)

    pod = sharding.make_mesh(model=2, devices=planner.topology_devices("v5e:4x4"))
    on_pod = planner.measure(planner.steps(config, pod)["cache"], hbm)
    assert on_pod["collectives"] == {} and on_pod["flops_per_chip"] == ours["flops_per_chip"]

    # A model axis splits the MLPs of SAM's image encoder as Megatron-LM does: evaluation's
    # only traffic is one sum of activations per encoder block (the first rule, every weight's
    # last axis split, made 163 all-gathers of activations here)
    split = sharding.make_mesh(model=2, devices=devices)
    blocks = sum(name.startswith("blocks_") for name in sam["image_encoder"])
    shardings = sharding.param_shardings(split, {"sam": sam})["sam"]["image_encoder"]["blocks_0"]
    assert shardings["mlp"]["lin1"]["kernel"].spec == P(None, "model")
    assert shardings["mlp"]["lin2"]["kernel"].spec == P("model", None)
    assert shardings["attn"]["qkv"]["kernel"].spec == P()
    evaluation = planner.measure(planner.steps(config, split)["eval"], hbm)
    assert set(evaluation["collectives"]) == {"all-reduce"}, evaluation["collectives"]
    assert evaluation["collectives"]["all-reduce"]["count"] == blocks

    huge = load_config("toy", [*TOY, f"train.global_batch={2**21}"])
    absurd = planner.measure(planner.steps(huge, mesh)["train_cached"], hbm)
    assert absurd["fits"] is False and absurd["peak_bytes"] > hbm, absurd
    assert "Ran out of memory" in absurd["refused"]


def test_plan_refusals_are_one_line(capsys):
    assert main(["plan", "--config", "toy", "--topology", "v9:1x1"]) == 2
    err = capsys.readouterr().err
    assert "unknown TPU topology 'v9:1x1' (examples: v5e:1x1, v5e:2x2" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["plan", "--config", "toy", "--topology", "h100:12"]) == 2
    err = capsys.readouterr().err
    assert "unknown GPU topology 'h100:12': say how many, up to 8 or a multiple of it" in err
    assert len(err.strip().splitlines()) == 1
    if not planner.has_cuda_compiler():  # as the test extra has it
        assert main(["plan", "--config", "toy", "--topology", "h100:8"]) == 2
        err = capsys.readouterr().err
        assert err.strip().endswith(
            "needs jaxlib's CUDA compiler to compile for a GPU: pip install -e \".[gpu-plan]\"")
        assert len(err.strip().splitlines()) == 1
    assert main(["plan", "--config", "toy", "--topology", "v5e:2x2",
                 "--config.train.global_batch=6"]) == 2
    err = capsys.readouterr().err
    assert "v5e:2x2:" in err and len(err.strip().splitlines()) == 1
    assert main(["plan", "--config", "toy", "--topology", "v5e:2x2", "--steps",
                 "train,bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown step 'bogus': the steps are train, train_cached, eval, cache" in err
    assert len(err.strip().splitlines()) == 1
