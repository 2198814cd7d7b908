"""Parity of the Flax VRP-SAM with a PyTorch reference (torch_vrp.py, from docs/COMPUTATION.md).

Random weights (every parameter and BatchNorm statistic randomised), random inputs, float32.
Tolerances: backbone features 1e-4 relative (max abs error / max abs value); VRP prompt
embeddings and 512-grid logits 1e-3 max abs. The PyTorch weights reach the Flax model through
the release's checkpoint layout (`module.`-prefixed state dict, `torch.save`d to a file).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from torch_sam import build_torch_sam, state_dict_numpy
from torch_vrp import TorchVRPEncoder, TorchVRPSam, nchw, nhwc, randomize_, rel_err

import sam_port
from sam_port.checkpoint import convert_sam_state_dict
from sam_port.convert import state_dict_to_params
from sam_port.modeling.sam import abstract_params
from sam_port.torch_pickle import load_state_dict
from vrp_sam_jax.models import VRPSam, VRPSamConfig, make_backbone
from vrp_sam_jax.names import CONDITIONS
from vrp_sam_jax.transforms.conditions import simulate_condition
from vrp_sam_jax.weights.backbones import convert_backbone
from vrp_sam_jax.weights.release import convert_release, read_release

FEATURE_RTOL = 1e-4
PROMPT_TOL = 1e-3
LOGIT_TOL = 1e-3


@pytest.mark.parametrize("backbone,size", [("resnet50", 96), ("resnet101", 64), ("vgg16", 96),
                                           ("resnet_tiny", 96)])
def test_backbone_features(backbone, size, tmp_path):
    """Features from the backbone's own file layout (PSPNet resnet*_v2.pth / torchvision
    vgg16_bn), converted by `convert_backbone`."""
    ref = randomize_(TorchVRPEncoder(backbone, hidden_dim=32), seed=1)
    path = tmp_path / "backbone.pth"
    torch.save(ref.backbone_net.state_dict(), path)
    name, params = convert_backbone(load_state_dict(path), backbone, path)
    assert name == backbone
    image = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        f_ref, l3_ref = ref.features(nchw(image))
        l4_ref = ref.layer4(l3_ref)
    module = make_backbone(backbone)
    f, l3 = module.apply({"params": params}, image, method=module.features)
    l4 = module.apply({"params": params}, l3, method=module.final_stage)
    for got, want in [(f, f_ref), (l4, l4_ref)]:
        want = nhwc(want)
        assert got.shape == want.shape
        assert np.abs(want).max() > 0.1
        assert rel_err(got, want) < FEATURE_RTOL


def _episode(size: int, shots: int, condition: str, seed: int):
    """Random normalised images and prompt masks of `condition` from blob-shaped GT masks."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(1, size, size, 3)).astype(np.float32)
    refs = rng.normal(size=(1, shots, size, size, 3)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    masks = []
    for _ in range(shots):
        cy, cx, r = rng.uniform(0.3, 0.7, 2).tolist() + [rng.uniform(0.15, 0.3)]
        gt = ((yy / size - cy) ** 2 + (xx / size - cx) ** 2) < r**2
        masks.append(simulate_condition(condition, gt, rng))
    return refs, np.stack(masks)[None], target


@pytest.fixture(scope="module")
def release_models(tmp_path_factory, vit_b_sam):
    """(torch VRP-SAM, our model, our params, our model's `apply` jitted) for ResNet-50 at the
    release's widths (256-d prompts into a ViT-B-sized SAM decoder); images at 128 to keep CPU
    time small. SAM image embeddings are random and given to both, so ViT-B's encoder is not
    run. One jitted `apply` for the module: the conditions share each shot count's programs
    (ResNet-50 applied op by op took longer than compiled once)."""
    torch_enc = randomize_(TorchVRPEncoder("resnet50"), seed=3)
    _, torch_sam = vit_b_sam
    path = tmp_path_factory.mktemp("vrp") / "best_model.pt"
    torch.save({k: torch.from_numpy(v) for k, v in torch_enc.state_dict_release().items()}, path)
    weights = read_release(path, "resnet50")
    sam_params = state_dict_to_params(
        state_dict_numpy(torch_sam), abstract_params(torch_sam_config()),
        source="torch")
    model = VRPSam(VRPSamConfig(backbone="resnet50", sam_type="vit_b", image_size=128))
    params = {**weights.params, "sam": sam_params}
    return (TorchVRPSam(torch_enc, torch_sam, image_size=128).eval(), model, params,
            jax.jit(model.apply, static_argnames="method"))


def torch_sam_config():
    return sam_port.get_config("vit_b")


@pytest.mark.parametrize("shots", [1, 5])
@pytest.mark.parametrize("condition", CONDITIONS)
def test_prompts_and_logits(release_models, condition, shots):
    torch_model, model, params, apply = release_models
    refs, masks, target = _episode(model.config.image_size, shots, condition, seed=shots)
    embeddings = np.random.default_rng(9).normal(size=(1, 64, 64, 256)).astype(np.float32)
    with torch.no_grad():
        want_prompts = torch.cat([
            torch_model.encoder(torch.from_numpy(masks[:, k]), nchw(target), nchw(refs[:, k]))
            for k in range(shots)], dim=1).numpy()
        want_logits = torch_model(nchw(target), nchw(refs), torch.from_numpy(masks),
                                  embeddings=nchw(embeddings)).numpy()
    variables = {"params": params}
    reference = apply(variables, refs, masks, method=model.encode_reference)
    tgt = apply(variables, target, method=model.encode_target)
    prompts = apply(variables, reference, tgt, method=model.prompts)
    logits = apply(variables, refs, masks, target, embeddings)
    assert prompts.shape == (1, 50 * shots, 256)
    assert np.abs(want_prompts).max() > 0.5
    np.testing.assert_allclose(prompts, want_prompts, rtol=0, atol=PROMPT_TOL)
    assert logits.shape == (1, 128, 128)
    assert np.abs(want_logits).max() > 0.1
    np.testing.assert_allclose(logits, want_logits, rtol=0, atol=LOGIT_TOL)


@pytest.fixture(scope="module")
def tiny_models():
    """(torch VRP-SAM, our converted weights, our params): tiny SAM and ResNet-tiny, 96 grid."""
    torch_enc = randomize_(TorchVRPEncoder("resnet_tiny", hidden_dim=32), seed=5)
    torch_sam = build_torch_sam(sam_port.get_config("tiny"), seed=6)
    torch_model = TorchVRPSam(torch_enc, torch_sam, image_size=96).eval()
    weights = convert_release(torch_enc.state_dict_release(), None, "mem")
    sam = convert_sam_state_dict(state_dict_numpy(torch_sam), "tiny", "mem")
    return torch_model, weights, {**weights.params, "sam": sam.params}


def test_end_to_end_tiny_with_sam_encoder(tiny_models):
    """Tiny SAM and backbone, SAM image encoder included (the 96 grid resized to SAM's 128
    with align_corners=True), batch of 2 episodes with 2 shots each."""
    torch_model, weights, params = tiny_models
    assert weights.backbone == "resnet_tiny" and weights.hidden_dim == 32
    model_config = VRPSamConfig(backbone="resnet_tiny", sam_type="tiny", image_size=96)
    eps = [_episode(96, 2, "mask", seed=s) for s in (11, 12)]
    refs, masks, target = (np.concatenate(parts) for parts in zip(*eps, strict=True))
    with torch.no_grad():
        want = torch_model(nchw(target), nchw(refs), torch.from_numpy(masks)).numpy()
    got = jax.jit(VRPSam(model_config).apply)({"params": params}, refs, masks, target)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=LOGIT_TOL)


# bf16 compute of the frozen parts, against float32 on the same random weights and inputs
# (tiny SAM with its image encoder, ResNet-tiny): mean and max abs logit difference relative to
# the float32 logits' largest magnitude. Measured 2026-11-30: see docs/PERFORMANCE.md.
BF16_MEAN_REL, BF16_MAX_REL = 0.01, 0.05


def test_bfloat16_compute_and_fused_attention(tiny_models):
    """`compute_dtype="bfloat16"` keeps float32 parameters and logits, and its logits stay
    within the stated distance of float32; `attention="xla"` (jax.nn.dot_product_attention
    with the rel-pos bias) matches the PyTorch original as the default path does."""
    torch_model, _, params = tiny_models
    refs, masks, target = _episode(96, 1, "mask", seed=13)
    with torch.no_grad():
        want = torch_model(nchw(target), nchw(refs), torch.from_numpy(masks)).numpy()

    def logits(**compute):
        model_config = VRPSamConfig(backbone="resnet_tiny", sam_type="tiny", image_size=96,
                                    **compute)
        return jax.jit(VRPSam(model_config).apply)({"params": params}, refs, masks, target)

    fused = logits(attention="xla")
    np.testing.assert_allclose(fused, want, rtol=0, atol=LOGIT_TOL)
    low = logits(compute_dtype="bfloat16")
    assert low.dtype == np.float32
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(params))
    diff = np.abs(np.asarray(low) - want)
    scale = np.abs(want).max()
    print(f"bf16 vs float32 logits: max abs {diff.max():.2e}, mean abs {diff.mean():.2e}, "
          f"max |logit| {scale:.3f}")
    assert 0 < diff.mean() < BF16_MEAN_REL * scale
    assert diff.max() < BF16_MAX_REL * scale
    with pytest.raises(ValueError, match="compute dtype"):
        VRPSamConfig(backbone="resnet_tiny", sam_type="tiny", compute_dtype="float8")


def test_trainable_parameter_count_resnet50(capsys):
    from vrp_sam_jax.cli import main

    assert main(["summary", "--backbone", "resnet50", "--sam-type", "vit_b"]) == 0
    assert "trainable: 1,592,064" in capsys.readouterr().out


def test_geometric_prompts_combine_with_vrp_prompts():
    """Points given with the VRP prompts: SAM's point embeddings first, then the 50 VRP
    tokens, decoded together (the release's `forward_prompt_encoder` with points)."""
    torch_sam = build_torch_sam(sam_port.get_config("tiny"), seed=8)
    sam = convert_sam_state_dict(state_dict_numpy(torch_sam), "tiny", "mem")
    model_config = VRPSamConfig(backbone="resnet_tiny", sam_type="tiny", image_size=96)
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(1, 8, 8, 32)).astype(np.float32)
    prompts = rng.normal(size=(1, 50, 32)).astype(np.float32)
    coords = np.array([[[30.0, 40.0], [90.0, 20.0]]], np.float32)
    labels = np.array([[1, 0]], np.int32)
    model = VRPSam(model_config)
    got = model.apply({"params": {"sam": sam.params}}, embeddings, prompts,
                      (coords, labels), method=model.decode)
    pe = torch_sam.prompt_encoder
    with torch.no_grad():
        sparse, dense = pe(points=(torch.from_numpy(coords), torch.from_numpy(labels)),
                           boxes=None, masks=None)
        sparse = torch.cat([sparse, torch.from_numpy(prompts)], dim=1)
        low, _ = torch_sam.mask_decoder(
            image_embeddings=nchw(embeddings), image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=False)
        want = torch.nn.functional.interpolate(low, (96, 96), mode="bilinear",
                                               align_corners=True)[:, 0].numpy()
    without_points = model.apply({"params": {"sam": sam.params}}, embeddings, prompts,
                                 method=model.decode)
    assert np.abs(np.asarray(without_points) - want).max() > 5 * LOGIT_TOL  # points matter
    np.testing.assert_allclose(got, want, rtol=0, atol=LOGIT_TOL)
