"""The paper's ablations as configuration: `model.num_queries` (Figure 6), `model.query_init`
(Table 6) and `train.loss` (Table 5) — shapes, values, and how they travel through configs,
runs and exported models."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sam_port.modeling.sam import INIT_COMPILER_OPTIONS
from vrp_sam_jax.config import from_json, load_config, to_json, vrp_sam_config
from vrp_sam_jax.errors import CheckpointError, ConfigError
from vrp_sam_jax.models import VRPSam, VRPSamConfig, init_params, summary
from vrp_sam_jax.models.vrp_encoder import masked_average_pooling, query_offset
from vrp_sam_jax.names import LOSSES, QUERY_INITS
from vrp_sam_jax.training.loss import segmentation_loss
from vrp_sam_jax.weights.release import VRPWeights, release_state_dict


def _inputs(size: int = 64, shots: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    refs = rng.normal(size=(1, shots, size, size, 3)).astype(np.float32)
    masks = np.zeros((1, shots, size, size), np.float32)
    masks[0, :, 8:40, 16:48] = 1
    target = rng.normal(size=(1, size, size, 3)).astype(np.float32)
    return refs, masks, target


def _through_prompts(m: VRPSam, refs, masks, target):
    return m.prompts(m.encode_reference(refs, masks), m.encode_target(target))


def _params(model_config: VRPSamConfig, seed: int = 0) -> dict:
    """Random backbone and encoder (no SAM: the prompts do not reach it), initialised by one
    program compiled as the models' initialisations are (INIT_COMPILER_OPTIONS)."""
    init = functools.partial(VRPSam(model_config).init, method=_through_prompts)
    return jax.jit(init, compiler_options=INIT_COMPILER_OPTIONS)(
        jax.random.key(seed), *_inputs(model_config.image_size))["params"]


def _prompts(model_config: VRPSamConfig, params: dict, refs, masks, target) -> np.ndarray:
    model = VRPSam(model_config)
    variables = {"params": params}
    reference = model.apply(variables, refs, masks, method=model.encode_reference)
    tgt = model.apply(variables, target, method=model.encode_target)
    return np.asarray(model.apply(variables, reference, tgt, method=model.prompts))


@pytest.mark.parametrize("num_queries", [1, 100])
def test_num_queries_shapes_and_trainable_count(num_queries):
    """K shots x num_queries prompt tokens; the trainable count grows by the query table."""
    model_config = VRPSamConfig(backbone="resnet_tiny", sam_type="tiny", image_size=64,
                                num_queries=num_queries)
    params = _params(model_config)
    assert params["encoder"]["transformer_decoder"]["supp_q_feat"]["weight"].shape == (
        num_queries, model_config.hidden_dim)
    assert _prompts(model_config, params, *_inputs()).shape == (1, 2 * num_queries,
                                                                 model_config.hidden_dim)
    base = summary(VRPSamConfig(backbone="resnet_tiny", sam_type="tiny", num_queries=50))
    assert summary(model_config)["trainable"] - base["trainable"] == (num_queries - 50) * 32
    with pytest.raises(ValueError, match="num_queries"):
        VRPSamConfig(num_queries=0)


def test_query_offsets():
    fg = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8)), jnp.float32)
    bg = -fg
    assert query_offset("random", 5, fg, bg) is None
    np.testing.assert_array_equal(query_offset("foreground", 5, fg, bg),
                                  np.repeat(fg[:, None], 5, 1))
    np.testing.assert_array_equal(query_offset("background", 5, fg, bg),
                                  np.repeat(bg[:, None], 5, 1))
    half = np.asarray(query_offset("half", 5, fg, bg))
    np.testing.assert_array_equal(half[:, :3], np.repeat(fg[:, None], 3, 1))
    np.testing.assert_array_equal(half[:, 3:], np.repeat(bg[:, None], 2, 1))
    with pytest.raises(ValueError, match="query_init"):
        VRPSamConfig(query_init="zeros")


@pytest.mark.parametrize("query_init", ["foreground", "background", "half"])
def test_query_init_is_the_table_plus_the_reference_prototype(query_init):
    """One shot: prompts with `query_init` equal the release's random-query model whose
    table is moved by the prototype (the masked average of the reduced reference features
    inside, or outside, the prompt mask), computed here by hand."""
    model_config = VRPSamConfig(backbone="resnet_tiny", sam_type="tiny", image_size=64,
                                num_queries=6, query_init=query_init)
    plain = VRPSamConfig(backbone="resnet_tiny", sam_type="tiny", image_size=64,
                         num_queries=6)
    params = _params(plain, seed=2)
    refs, masks, target = _inputs(shots=1, seed=3)
    model = VRPSam(plain)
    reference = model.apply({"params": params}, refs, masks, method=model.encode_reference)
    feats, _ = model.apply({"params": params}, refs[:, 0], method=lambda m, x: m.backbone
                           .features(x))
    reduced = jax.nn.relu(jnp.einsum(
        "bhwi,io->bhwo", feats,
        params["encoder"]["downsample_query_0"]["kernel"][0, 0]))
    mask = np.asarray(reference.mask[:, 0])
    fg = masked_average_pooling(reduced, mask)
    bg = masked_average_pooling(reduced, 1 - mask)
    np.testing.assert_allclose(reference.prototype[:, 0], fg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reference.background[:, 0], bg, rtol=1e-5, atol=1e-6)
    offset = {"foreground": np.repeat(fg, 6, 0), "background": np.repeat(bg, 6, 0),
              "half": np.concatenate([np.repeat(fg, 3, 0), np.repeat(bg, 3, 0)])}[query_init]
    moved = jax.tree.map(lambda x: x, params)
    table = moved["encoder"]["transformer_decoder"]["supp_q_feat"]["weight"]
    moved["encoder"]["transformer_decoder"]["supp_q_feat"]["weight"] = table + offset
    want = _prompts(plain, moved, refs, masks, target)
    got = _prompts(model_config, params, refs, masks, target)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert np.abs(got - _prompts(plain, params, refs, masks, target)).max() > 1e-2


def test_losses_match_torch():
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 3, (3, 16, 16)).astype(np.float32)
    truth = (rng.random((3, 16, 16)) > 0.7).astype(np.float32)
    lt, yt = torch.from_numpy(logits), torch.from_numpy(truth)
    bce = float(torch.nn.BCEWithLogitsLoss()(lt, yt))
    p, y = torch.sigmoid(lt).flatten(1), yt.flatten(1)
    dice = float((1 - (2 * (p * y).sum(-1) + 1) / (p.sum(-1) + y.sum(-1) + 1)).mean())
    want = {"bce": bce, "dice": dice, "bce+dice": bce + dice}
    assert set(want) == set(LOSSES)
    for kind, value in want.items():
        assert abs(float(segmentation_loss(kind, jnp.asarray(logits), jnp.asarray(truth)))
                   - value) < 1e-5
    with pytest.raises(ValueError, match="unknown loss"):
        segmentation_loss("focal", jnp.asarray(logits), jnp.asarray(truth))


def test_config_fields_defaults_checks_and_old_runs():
    config = load_config("pascal:resnet50,mask")
    assert config.model.query_init == "random" and config.train.loss == "bce+dice"
    assert vrp_sam_config(load_config("toy", ["model.query_init=half"])).query_init == "half"
    assert load_config("toy", ["train.loss=dice"]).train.loss == "dice"
    with pytest.raises(ConfigError, match="train.loss='focal' is not one of"):
        load_config("toy", ["train.loss=focal"])
    with pytest.raises(ConfigError, match="query_init"):
        load_config("toy", ["model.query_init=zeros"])
    # a run written before the fields existed reads as the release's choices
    old = json.loads(to_json(load_config("toy")))
    del old["model"]["query_init"], old["train"]["loss"]
    read = from_json(json.dumps(old), "old/config.json")
    assert read.model.query_init == "random" and read.train.loss == "bce+dice"
    assert set(QUERY_INITS) >= {"random", "half"}


def test_the_release_format_refuses_what_it_cannot_hold():
    for backbone, query_init, message in (("resnet_tiny", "half", "query_init='half'"),
                                          ("dinov2_tiny", "random", "dinov2_tiny backbone")):
        weights = VRPWeights(backbone, 32, 4, {}, 4, query_init)  # refused before reading
        with pytest.raises(CheckpointError, match=message):
            release_state_dict(weights)


def test_the_train_step_minimises_the_configured_loss():
    """`jit_train_step(..., loss=kind)` reports `segmentation_loss(kind)` of the logits the
    step computed (same dropout key); the trainer passes `train.loss` to it."""
    import optax

    from vrp_sam_jax.data import protocols
    from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions
    from vrp_sam_jax.data.sources import ToySource
    from vrp_sam_jax.evaluation.step import forward
    from vrp_sam_jax.runtime import sharding
    from vrp_sam_jax.training import partition
    from vrp_sam_jax.training import step as step_lib

    # the toy model the trainings of the suite initialise (its initialisation is compiled once)
    model_config = vrp_sam_config(load_config("toy", ["model.image_size=64"]))
    params = init_params(model_config)
    trainable, frozen = partition.split(params, ("encoder",))
    episodes = protocols.training_episodes("toy", 0, 1, 0, 7)[:2]
    batch = next(iter(EpisodeLoader(ToySource(), episodes, 2, EpisodeOptions(64, "mask",
                                    training=True, seed=(7, 0)), drop_remainder=True,
                                    process_index=0, process_count=1)))
    # SAM's target embeddings given, as from the cache: the losses are computed on the logits
    # either way, and the image encoder stays out of both programs compiled here
    shape = jax.eval_shape(lambda p, x: VRPSam(model_config).apply({"params": p}, x,
                                                             method=VRPSam.embed_targets),
                           params, batch["query_image"]).shape
    batch["embeddings"] = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    mesh = sharding.make_mesh(1, 1)
    rep = sharding.replicated(mesh)
    rng = jax.random.key(5)
    logits = jax.jit(forward, static_argnums=(0, 3))(model_config, params, batch, False,
                                                     jax.random.fold_in(rng, 0))
    optimizer = optax.sgd(0.0)
    step = step_lib.jit_train_step(model_config, optimizer, rep, rep, sharding.batch_sharding(mesh),
                                   rep, loss="dice")
    _, metrics = step(step_lib.init_state(trainable, optimizer), frozen,
                      sharding.to_global(batch, mesh), rng)
    want = {kind: float(segmentation_loss(kind, logits, batch["query_mask"], batch["valid"]))
            for kind in LOSSES}
    assert abs(float(metrics["loss"]) - want["dice"]) < 1e-4
    assert abs(want["dice"] - want["bce+dice"]) > 1e-2  # the kinds differ here
