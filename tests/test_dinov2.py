"""DINOv2 as the VRP encoder's backbone, against the official `dinov2` package (PyPI, installed
without its dependencies by the README's test command: it pins torch 2.0 and xformers, and its
model code needs neither).

Random weights (every parameter randomised, the position embedding at the pre-training grid
too, so the bicubic interpolation is exercised), random inputs, float32. Tolerances:
backbone features and layer4 1e-4 relative (max abs error / max abs value); VRP prompt
embeddings and logits 1e-3 max abs.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

pytest.importorskip("dinov2", reason="pip install --no-deps dinov2==0.0.1.dev2")

from torch_sam import build_torch_sam, state_dict_numpy  # noqa: E402
from torch_vrp import (  # noqa: E402
    TorchVRPEncoder,
    TorchVRPSam,
    nchw,
    nhwc,
    randomize_,
    rel_err,
)

import sam_port  # noqa: E402
from sam_port.checkpoint import convert_sam_state_dict  # noqa: E402
from sam_port.convert import state_dict_to_params  # noqa: E402
from sam_port.torch_save import save_state_dict  # noqa: E402
from vrp_sam_jax.errors import CheckpointError  # noqa: E402
from vrp_sam_jax.models import VRPSam, VRPSamConfig, make_backbone  # noqa: E402
from vrp_sam_jax.models.dinov2 import interpolate_pos_embed  # noqa: E402
from vrp_sam_jax.weights.backbones import convert_backbone, load_backbone  # noqa: E402
from vrp_sam_jax.weights.release import abstract_encoder  # noqa: E402

FEATURE_RTOL = 1e-4
LOGIT_TOL = 1e-3


def _encoder(backbone: str, seed: int, hidden_dim: int = 32) -> TorchVRPEncoder:
    enc = randomize_(TorchVRPEncoder(backbone, hidden_dim=hidden_dim), seed=seed)
    with torch.no_grad():  # a position embedding of the same scale as the patch tokens
        pos = enc.backbone_net.pos_embed
        pos.copy_(torch.randn(pos.shape, generator=torch.Generator().manual_seed(seed)))
    return enc


def _official_file(enc: TorchVRPEncoder, path) -> dict:
    """The backbone's state dict as the hub's `dinov2_*_pretrain.pth` holds it."""
    sd = {k: v.detach().numpy() for k, v in enc.backbone_net.state_dict().items()}
    assert {"cls_token", "pos_embed", "mask_token", "norm.weight"} <= set(sd)
    save_state_dict(sd, path)
    return sd


@pytest.mark.parametrize("backbone,size", [("dinov2_tiny", 128), ("dinov2_vits14", 224)])
def test_features_and_layer4_match_official(backbone, size, tmp_path):
    """Features, layer4 and masked layer4 from the official file layout (converted by
    `load_backbone`) against the official model cut into the release author's stages; sizes
    not divisible by 14 (128 -> 126 = 9 x 9 tokens, 224 -> 16 x 16) interpolate the position
    embedding from the pre-training grid."""
    ref = _encoder(backbone, seed=1)
    path = tmp_path / f"{backbone}_pretrain.pth"
    _official_file(ref, path)
    name, params = load_backbone(path, backbone)
    assert name == backbone
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, size, size, 3)).astype(np.float32)
    module = make_backbone(backbone)
    f, l3 = module.apply({"params": params}, image, method=module.features)
    grid = f.shape[1]
    mask = (rng.uniform(size=(2, grid, grid, 1)) > 0.5).astype(np.float32)
    l4 = module.apply({"params": params}, l3, method=module.final_stage)
    l4_masked = module.apply({"params": params}, l3, mask, method=module.masked_final_stage)
    with torch.no_grad():
        f_ref, l3_ref = ref.features(nchw(image))
        l4_ref = ref.final_stage(l3_ref)
        l4_masked_ref = ref.final_stage(l3_ref, nchw(mask))
    assert grid == (size // 14)
    for got, want in [(f, f_ref), (l4, l4_ref), (l4_masked, l4_masked_ref)]:
        want = nhwc(want)
        assert got.shape == want.shape
        assert np.abs(want).max() > 0.1
        assert rel_err(got, want) < FEATURE_RTOL
    assert rel_err(l4_masked, nhwc(l4_ref)) > 1e-2  # the mask matters


def test_position_embedding_at_pretrain_grid_is_unchanged():
    pos = np.random.default_rng(2).normal(size=(1, 1 + 16, 8)).astype(np.float32)
    np.testing.assert_array_equal(interpolate_pos_embed(pos, 4, 4), pos)
    assert interpolate_pos_embed(pos, 9, 4).shape == (1, 82, 8)


def test_vrp_sam_with_dinov2_matches_reference():
    """The whole VRP-SAM (tiny SAM with its image encoder, DINOv2-tiny, 2 episodes of 2 shots,
    the 112 grid) against the PyTorch reference built on the official DINOv2."""
    enc = _encoder("dinov2_tiny", seed=3)
    torch_sam = build_torch_sam(sam_port.get_config("tiny"), seed=4)
    torch_model = TorchVRPSam(enc, torch_sam, image_size=112).eval()
    _, backbone = convert_backbone(
        {k: v.detach().numpy() for k, v in enc.backbone_net.state_dict().items()},
        "dinov2_tiny", "mem")
    encoder_sd = {k: v.detach().numpy() for k, v in enc.state_dict().items()
                  if not k.startswith("layer")}
    params = {"backbone": backbone,
              "encoder": state_dict_to_params(encoder_sd, abstract_encoder("dinov2_tiny", 32),
                                              source="mem"),
              "sam": convert_sam_state_dict(state_dict_numpy(torch_sam), "tiny", "mem").params}
    rng = np.random.default_rng(5)
    refs = rng.normal(size=(2, 2, 112, 112, 3)).astype(np.float32)
    target = rng.normal(size=(2, 112, 112, 3)).astype(np.float32)
    masks = np.zeros((2, 2, 112, 112), np.float32)
    masks[0, 0, 20:70, 30:90] = masks[0, 1, 50:100, 10:60] = 1
    masks[1, 0, 5:40, 5:40] = masks[1, 1, 60:110, 40:100] = 1
    with torch.no_grad():
        want = torch_model(nchw(target), nchw(refs), torch.from_numpy(masks)).numpy()
    model_config = VRPSamConfig(backbone="dinov2_tiny", sam_type="tiny", image_size=112)
    got = jax.jit(VRPSam(model_config).apply)({"params": params}, refs, masks, target)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=LOGIT_TOL)


def test_converter_refuses_wrong_files(tmp_path):
    """Wrong sizes, registers, a missing block and an unknown width: one line each, naming
    the file."""
    sd = {k: v.detach().numpy() for k, v in
          _encoder("dinov2_tiny", seed=6).backbone_net.state_dict().items()}
    cases = {
        "asked": (sd, "dinov2_vits14", "holds a dinov2_tiny backbone"),
        "registers": ({**sd, "register_tokens": np.zeros((1, 4, 32), np.float32)}, None,
                      "registers"),
        "width": ({**sd, "cls_token": np.zeros((1, 1, 48), np.float32)}, None,
                  "width 48 and 4 blocks"),
        "pos": ({**sd, "pos_embed": np.zeros((1, 26, 32), np.float32)}, None, "pos_embed"),
        "missing": ({k: v for k, v in sd.items() if k != "blocks.1.mlp.fc2.weight"}, None,
                    "blocks.1.mlp.fc2.weight"),
    }
    for label, (state, asked, message) in cases.items():
        path = tmp_path / f"{label}.pth"
        save_state_dict(state, path)
        with pytest.raises(CheckpointError, match=message) as err:
            load_backbone(path, asked)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_summary_prints_the_trainable_count(capsys):
    from vrp_sam_jax.cli import main

    assert main(["summary", "--backbone", "dinov2_vitl14", "--sam-type", "vit_b"]) == 0
    assert "trainable: 1,723,136" in capsys.readouterr().out  # 2048-d features in



def test_gp_sam_prior_with_dinov2_matches_reference():
    """GP-SAM's training-free prior (K = 2 references, averaged) from DINOv2 features equals
    the reference's (the pseudo masks, points and boxes follow from it as for ResNet,
    tests/test_gp_sam.py)."""
    from vrp_sam_jax.models import gp_sam

    enc = _encoder("dinov2_tiny", seed=7)
    _, backbone = convert_backbone(
        {k: v.detach().numpy() for k, v in enc.backbone_net.state_dict().items()},
        "dinov2_tiny", "mem")
    model_config = VRPSamConfig(backbone="dinov2_tiny", sam_type="tiny", image_size=112)
    rng = np.random.default_rng(8)
    refs = rng.normal(size=(1, 2, 112, 112, 3)).astype(np.float32)
    target = rng.normal(size=(1, 112, 112, 3)).astype(np.float32)
    masks = np.zeros((1, 2, 112, 112), np.float32)
    masks[0, 0, 10:60, 20:80] = masks[0, 1, 50:100, 40:90] = 1
    params = {"backbone": backbone}
    reference = gp_sam.encode_reference(model_config, params, refs, masks)
    model = VRPSam(model_config)
    got = model.apply({"params": params}, *reference, target, method=model.target_prior)
    want = nhwc(enc.mean_prior(torch.from_numpy(masks), nchw(target), nchw(refs)))
    assert got.shape == want.shape == (1, 8, 8, 1)
    assert rel_err(got, want) < FEATURE_RTOL
