"""Numerical parity of the Flax SAM 2 image model with the official `sam2` package (1.1.0).

Random weights (every parameter randomised, see torch_sam2.py), random non-zero inputs,
float32. The official model is loaded into ours through an official-layout `.pt` file the
test writes, so the converter is on every path. Tolerance: the largest difference at most
1e-4 of the reference's largest magnitude, for image embeddings, high-res features, low-res
and full-size mask logits, IoU and object scores alike.
The toy config runs the whole matrix; Hiera-tiny at 1024x1024 checks the image encoder and
one decoding, marked `full_size`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import sam_port
from sam_port.compute import sam2_embed_images
from sam_port.modeling.hiera import sine_position_encoding
from sam_port.modeling.sam2 import Sam2
from sam_port.torch_pickle import CheckpointError

REL_TOL = 1e-4


def assert_close(got, ref, rel: float = REL_TOL) -> None:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    scale = np.abs(ref).max()
    assert scale > 0.1, "a real signal, not zeros"
    assert np.abs(got - ref).max() <= rel * scale, (np.abs(got - ref).max(), scale)


@pytest.fixture(scope="module", params=[
    "sam2.1_toy", pytest.param("sam2.1_hiera_tiny", marks=pytest.mark.full_size)])
def models(request, tmp_path_factory):
    """(official SAM2Base, ours loaded from its `torch.save`d `{"model": state_dict}`)."""
    from torch_sam2 import build_torch_sam2, save_official_checkpoint

    model_type = request.param
    if model_type == "sam2.1_toy":
        path, torch_model = request.getfixturevalue("toy_sam2")
    else:
        torch_model = build_torch_sam2(sam_port.get_sam2_config(model_type), seed=5)
        path = save_official_checkpoint(
            torch_model, tmp_path_factory.mktemp("sam2") / f"{model_type}.pt")
    ours = sam_port.load_sam(path)
    assert isinstance(ours, sam_port.LoadedSam2) and ours.model_type == model_type
    return torch_model, ours


@pytest.fixture(scope="module")
def toy(toy_sam2):
    """(official SAM2Base, ours) at the toy config alone: what the paths checked once use."""
    path, torch_model = toy_sam2
    return torch_model, sam_port.load_sam(path)


def _picture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx * 200 / w, yy * 200 / h, (xx + yy) * 100 / (h + w)], -1)
    return np.clip(smooth + rng.integers(0, 55, size=(h, w, 3)), 0, 255).astype(np.uint8)


def _official_predictor(torch_model):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(torch_model)
    s = torch_model.image_size // 16  # the official predictor assumes 1024 inputs
    predictor._bb_feat_sizes = [(4 * s, 4 * s), (2 * s, 2 * s), (s, s)]
    return predictor


@pytest.fixture(scope="module")
def predictors(models):
    """Both predictors set on the same non-square picture (larger than the toy's input, so
    the resize shrinks with antialiasing; smaller than Hiera-tiny's, so it enlarges)."""
    torch_model, ours = models
    ref, pred = _official_predictor(torch_model), sam_port.SAM2ImagePredictor(ours)
    image = _picture(300, 410, seed=1)
    with torch.no_grad():
        ref.set_image(image)
    pred.set_image(image)
    return ref, pred, image


def test_image_embedding_and_high_res_features(predictors):
    ref, pred, _ = predictors
    assert_close(pred.get_image_embedding(), ref.get_image_embedding().numpy())
    for got, want in zip(pred._features["high_res_feats"], ref._features["high_res_feats"],
                         strict=True):
        assert_close(got, want.numpy().transpose(0, 2, 3, 1))


def _cases(size: tuple[int, int]):
    """Prompt sets in original-image pixels, each with the multimask setting it is run with
    (each case is a compilation, so the settings alternate rather than multiply)."""
    h, w = size
    rng = np.random.default_rng(11)
    points = rng.uniform(0, [w, h], size=(3, 2)).astype(np.float32)
    box = np.array([0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h], np.float32)
    return {
        "one point": (True, dict(point_coords=points[:1], point_labels=np.array([1]))),
        "points": (False, dict(point_coords=points, point_labels=np.array([1, 0, 1]))),
        "box": (False, dict(box=box)),
        "box and points": (True, dict(box=box, point_coords=points,
                                      point_labels=np.array([1, 0, 1]))),
        "two boxes": (True, dict(box=np.stack([box, box * 0.5]))),
        "batched points": (False, dict(point_coords=np.stack([points, points[::-1]]),
                                       point_labels=np.array([[1, 0, 1], [1, 1, 0]]))),
    }


def test_predict_matches_official(predictors, models):
    """Every prompt kind on the toy; at full size, a box with points (the prompt kinds take
    the same code at any size)."""
    ref, pred, image = predictors
    cases = _cases(image.shape[:2])
    if models[1].config.image_size > 128:
        cases = {"box and points": cases["box and points"]}
    for name, (multimask, prompts) in cases.items():
        with torch.no_grad():
            want = ref.predict(**prompts, multimask_output=multimask, return_logits=True)
        got = pred.predict(**prompts, multimask_output=multimask, return_logits=True)
        for g, r in zip(got, want, strict=True):
            assert_close(g, r), name
    # fed back as a mask prompt: the low-res logits of the last answer's first mask
    mask_input = want[2][:1] if want[2].ndim == 3 else want[2][0, :1]
    with torch.no_grad():
        want = ref.predict(mask_input=mask_input, multimask_output=False, return_logits=True)
    got = pred.predict(mask_input=mask_input, multimask_output=False)
    assert_close(got[1], want[1])
    assert_close(got[2], want[2])
    # the thresholded masks agree wherever the logits are not within rounding of 0
    assert got[0].dtype == bool
    certain = np.abs(want[0]) > 1e-3
    np.testing.assert_array_equal(got[0][certain], want[0][certain] > 0)


def test_object_scores_and_tokens_match_official(predictors, models):
    """The decoder's object-score logits and output tokens, as the video model reads them."""
    torch_model, ours = models
    ref, pred, _ = predictors
    rng = np.random.default_rng(4)
    s = ours.config.image_size
    coords = rng.uniform(0, s, size=(3, 2, 2)).astype(np.float32)
    labels = np.array([[1, 0], [1, 1], [2, 3]], np.int32)
    with torch.no_grad():
        sparse, dense = torch_model.sam_prompt_encoder(
            points=(torch.from_numpy(coords), torch.from_numpy(labels)), boxes=None, masks=None)
        masks, iou, tokens, scores = torch_model.sam_mask_decoder(
            image_embeddings=ref._features["image_embed"],
            image_pe=torch_model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=True, repeat_image=True,
            high_res_features=ref._features["high_res_feats"])
    decode = jax.jit(partial(Sam2(ours.config).apply, method=Sam2.predict_from_embeddings),
                     static_argnums=(5,))
    out = decode(ours.variables, pred._features["image_embed"],
                 tuple(pred._features["high_res_feats"]),
                 (jnp.asarray(coords), jnp.asarray(labels)), None, True)
    assert_close(out.masks, masks.numpy())
    assert_close(out.iou, iou.numpy())
    assert_close(out.object_score_logits, scores.numpy())
    assert_close(out.sam_tokens, tokens.numpy())  # the three multimask tokens' outputs


def test_set_image_batch_and_predict_batch(toy):
    torch_model, ours = toy
    ref, pred = _official_predictor(torch_model), sam_port.SAM2ImagePredictor(ours)
    images = [_picture(90, 70, seed=2), _picture(160, 240, seed=3)]
    with torch.no_grad():
        ref.set_image_batch(images)
    pred.set_image_batch(images)
    boxes = [np.array([10, 10, 50, 80], np.float32), np.array([30, 20, 200, 150], np.float32)]
    points = [np.array([[30.0, 40.0]]), np.array([[100.0, 70.0]])]
    labels = [np.array([1]), np.array([1])]
    with torch.no_grad():
        want = ref.predict_batch(points, labels, box_batch=boxes, return_logits=True)
    got = pred.predict_batch(points, labels, box_batch=boxes, return_logits=True)
    for got_list, want_list in zip(got, want, strict=True):
        for g, r in zip(got_list, want_list, strict=True):
            assert_close(g, r)


def test_sine_position_encoding_matches_official():
    from sam2.modeling.position_encoding import PositionEmbeddingSine

    for h, w, c in ((64, 64, 256), (16, 12, 64)):
        want = PositionEmbeddingSine(c, warmup_cache=False)(torch.zeros(1, c, h, w))
        np.testing.assert_allclose(sine_position_encoding(h, w, c),
                                   want[0].numpy().transpose(1, 2, 0), rtol=0, atol=1e-6)


def test_converter_round_trip_and_model_types(toy, tmp_path):
    """Official file -> ours -> directory -> ours, and back to the official keys; model types
    found from the file, checked when given."""
    from torch_sam2 import save_official_checkpoint, state_dict_numpy

    from sam_port.sam2_checkpoint import infer_sam2_model_type, to_official_state_dict

    torch_model, ours = toy
    official = state_dict_numpy(torch_model)
    exported = to_official_state_dict(ours.params)
    assert set(exported) == set(official)  # the image and the video model, every tensor
    for key in official:
        np.testing.assert_array_equal(exported[key], official[key])

    directory = sam_port.save_sam(ours, tmp_path / "converted")
    again = sam_port.load_sam(directory, "sam2.1_toy")
    assert again.model_type == "sam2.1_toy"
    assert jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(a, b), again.params,
                                     ours.params))

    with pytest.raises(CheckpointError, match="holds a sam2.1_toy SAM 2, but model type "
                                              "sam2.1_hiera_t was asked for"):
        sam_port.load_sam(directory, "sam2.1_hiera_t")
    path = save_official_checkpoint(torch_model, tmp_path / "toy.pt")
    with pytest.raises(CheckpointError, match="holds a sam2.1_toy SAM 2, but model type sam3 "):
        sam_port.load_sam(path, "sam3")
    with pytest.raises(CheckpointError, match="holds a sam2.1_toy SAM 2, but model type vit_b "):
        sam_port.load_sam(path, "vit_b")

    # the releases and sizes, from the trunk's width and depth and 2.1's keys
    def keys(width, depth, v21):
        d = {"image_encoder.trunk.patch_embed.proj.weight": np.zeros((width, 3, 7, 7))}
        d.update({f"image_encoder.trunk.blocks.{i}.norm1.weight": np.zeros(1)
                  for i in range(depth)})
        if v21:
            d["no_obj_embed_spatial"] = np.zeros(1)
        return d

    assert infer_sam2_model_type(keys(96, 12, True), "f") == "sam2.1_hiera_tiny"
    assert infer_sam2_model_type(keys(96, 12, False), "f") == "sam2_hiera_tiny"
    assert infer_sam2_model_type(keys(96, 16, False), "f") == "sam2_hiera_small"
    assert infer_sam2_model_type(keys(112, 24, True), "f") == "sam2.1_hiera_base_plus"
    assert infer_sam2_model_type(keys(144, 48, False), "f") == "sam2_hiera_large"
    with pytest.raises(CheckpointError, match="width 100 and depth 12 matches no known"):
        infer_sam2_model_type(keys(100, 12, True), "f")


def test_embed_images_in_bfloat16_stays_close(toy):
    """The encoder in bfloat16 (float32 parameters, float32 statistics) stays near float32."""
    _, ours = toy
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 128, 128, 3)), jnp.float32)
    f32, _ = sam2_embed_images(ours.config, ours.params, x)
    bf16, _ = sam2_embed_images(ours.config, ours.params, x, "bfloat16")
    assert bf16.dtype == jnp.float32
    assert np.abs(np.asarray(bf16) - np.asarray(f32)).max() < 0.1 * np.abs(np.asarray(f32)).max()


def test_memory_encoder_and_attention_match_official(toy):
    """The video model's modules on random inputs: the memory encoder (a frame's features and
    its scaled mask) and the memory attention over two memory frames and four object-pointer
    tokens (rotary encodings on the frames' keys only)."""
    torch_model, ours = toy
    cfg, rng = ours.config, np.random.default_rng(8)
    s, c, mem = cfg.embedding_size, cfg.d_model, cfg.mem_dim
    pix = rng.normal(size=(2, s, s, c)).astype(np.float32)
    mask = (20 * rng.uniform(size=(2, 16 * s, 16 * s, 1)) - 10).astype(np.float32)
    with torch.no_grad():
        want = torch_model.memory_encoder(torch.from_numpy(pix).permute(0, 3, 1, 2),
                                          torch.from_numpy(mask).permute(0, 3, 1, 2),
                                          skip_mask_sigmoid=True)
    model = Sam2(cfg)
    features, pos = jax.jit(partial(model.apply, method=Sam2.encode_memory))(
        ours.variables, pix, mask)
    assert_close(features, want["vision_features"].numpy().transpose(0, 2, 3, 1))
    assert_close(pos, want["vision_pos_enc"][0][0].numpy().transpose(1, 2, 0))

    curr = rng.normal(size=(2, s * s, c)).astype(np.float32)
    curr_pos = rng.normal(size=(2, s * s, c)).astype(np.float32)
    memory = rng.normal(size=(2, 2 * s * s + 4, mem)).astype(np.float32)
    memory_pos = rng.normal(size=(2, 2 * s * s + 4, mem)).astype(np.float32)
    with torch.no_grad():
        want = torch_model.memory_attention(
            curr=torch.from_numpy(curr).transpose(0, 1), memory=torch.from_numpy(memory)
            .transpose(0, 1), curr_pos=torch.from_numpy(curr_pos).transpose(0, 1),
            memory_pos=torch.from_numpy(memory_pos).transpose(0, 1), num_obj_ptr_tokens=4)
    got = jax.jit(partial(model.apply, method=Sam2.attend_memory), static_argnums=5)(
        ours.variables, curr, memory, curr_pos, memory_pos, 4)
    assert_close(got, want.transpose(0, 1).numpy())


def test_single_mask_stability_fallback_as_the_official():
    """`build_sam2`'s decoder: token 0's mask where stable, else the best multimask one; four
    masks per row, rows drawn so that some single masks are stable and some are not."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder as Official

    from sam_port.modeling.mask_decoder import dynamic_multimask_via_stability

    rng = np.random.default_rng(0)
    masks = rng.normal(0, 1, (6, 4, 16, 16)).astype(np.float32)
    masks[:3, 0] = np.where(masks[:3, 0] > 0, 5.0, -5.0)  # far from 0: stable
    iou = rng.uniform(0, 1, (6, 4)).astype(np.float32)
    decoder = Official.__new__(Official)
    decoder.dynamic_multimask_stability_delta, decoder.dynamic_multimask_stability_thresh = \
        0.05, 0.98
    want = decoder._dynamic_multimask_via_stability(torch.from_numpy(masks),
                                                    torch.from_numpy(iou))
    got = dynamic_multimask_via_stability(jnp.asarray(masks), jnp.asarray(iou))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.asarray(g), w.numpy())
    assert (np.asarray(got[0])[:3] == masks[:3, :1]).all()
    assert not (np.asarray(got[0])[3:] == masks[3:, :1]).all()
