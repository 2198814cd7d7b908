"""Resizes with PyTorch's semantics, against `torch.nn.functional.interpolate`."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam_port.interpolate import (
    resize_bicubic,
    resize_bilinear,
    resize_linear_1d,
    resize_nearest,
)

SIZES = [((7, 9), (16, 12)), ((64, 64), (512, 512)), ((256, 256), (183, 301)), ((5, 5), (1, 3))]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("in_hw", "out_hw"), SIZES)
def test_bilinear_matches_torch(in_hw, out_hw, align_corners):
    x = np.random.default_rng(0).normal(size=(2, 3, *in_hw)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x), out_hw, mode="bilinear",
                        align_corners=align_corners).numpy()
    got = resize_bilinear(jnp.asarray(x), out_hw, align_corners=align_corners, axes=(-2, -1))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=1e-5)


def test_bilinear_nhwc_default_axes():
    x = np.random.default_rng(1).normal(size=(1, 6, 10, 4)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), (13, 7), mode="bilinear",
                        align_corners=True).permute(0, 2, 3, 1).numpy()
    got = resize_bilinear(jnp.asarray(x), (13, 7), align_corners=True)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("in_hw", "out_hw"), [((512, 512), (64, 64)), ((10, 7), (23, 3))])
def test_nearest_matches_torch(in_hw, out_hw):
    x = np.random.default_rng(2).normal(size=(1, 2, *in_hw)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x), out_hw, mode="nearest").numpy()
    got = resize_nearest(jnp.asarray(x), out_hw, axes=(-2, -1))
    np.testing.assert_array_equal(np.asarray(got), ref)


def test_linear_1d_matches_torch():
    x = np.random.default_rng(3).normal(size=(27, 8)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x.T[None]), size=127, mode="linear")[0].T.numpy()
    np.testing.assert_allclose(np.asarray(resize_linear_1d(jnp.asarray(x), 127)), ref, atol=1e-5)


@pytest.mark.parametrize(("in_hw", "size", "scale"), [
    ((37, 37), None, (36.1 / 37, 36.1 / 37)),  # DINOv2's position embedding, 518 -> 504
    ((4, 4), None, (9.1 / 4, 9.1 / 4)),  # upsampling with a factor
    ((7, 9), (16, 5), None),  # sizes, no factor
])
def test_bicubic_matches_torch(in_hw, size, scale):
    """Bicubic (A = -0.75, edge taps clamped), with PyTorch's use of a given scale factor
    (coordinates mapped by 1 / factor, not in / out)."""
    x = np.random.default_rng(1).normal(size=(2, 3, *in_hw)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x), size=size, scale_factor=scale,
                        mode="bicubic").numpy()
    got = resize_bicubic(jnp.asarray(x), ref.shape[-2:], scale_factor=scale, axes=(-2, -1))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=3e-5)
