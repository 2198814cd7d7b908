"""Frozen backbones of VRP-SAM: the PSPNet deep-stem dilated ResNet, VGG-16-BN and DINOv2.

Module names follow the release's PyTorch attributes (`layer0.0` is written `layer0_0`), so
`sam_port.convert` maps every parameter to the release's state-dict key. Both backbones expose
the same stages the VRP encoder needs (DINOv2, in `dinov2.py`, too):

  `features(x)` -> (concat(layer2, layer3) along channels, layer3)
  `final_stage(layer3)` -> layer4
  `masked_final_stage(layer3, mask)` -> layer4 of layer3 masked by `mask` on the feature grid

BatchNorm always runs in inference mode (running statistics), as in the release.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_port.interpolate import resize_bilinear
from vrp_sam_jax.models.dinov2 import DinoSpec, DinoV2


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """A PSPNet-style ResNet: deep stem widths, Bottleneck planes and blocks per layer."""

    blocks: tuple[int, int, int, int]
    stem: tuple[int, int, int] = (64, 64, 128)
    planes: tuple[int, int, int, int] = (64, 128, 256, 512)

    expansion = 4

    @property
    def feature_dim(self) -> int:
        return (self.planes[1] + self.planes[2]) * self.expansion


@dataclasses.dataclass(frozen=True)
class VGGSpec:
    """VGG-BN `features` as torchvision's config list ('M' = max pool) and the index split."""

    widths: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                     512, 512, 512, "M", 512, 512, 512)
    splits: tuple[int, ...] = (0, 7, 14, 24, 34, 43)

    @property
    def feature_dim(self) -> int:
        return 256 + 512


BackboneSpec = ResNetSpec | VGGSpec | DinoSpec

BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": ResNetSpec((3, 4, 6, 3)),
    "resnet101": ResNetSpec((3, 4, 23, 3)),
    "vgg16": VGGSpec(),
    # DINOv2 hub models (`dinov2_vit{s,b,l}14`); ViT-L's stages are the release author's.
    "dinov2_vits14": DinoSpec(384, 12, 6, splits=(4, 6, 10)),
    "dinov2_vitb14": DinoSpec(768, 12, 12, splits=(4, 6, 10)),
    "dinov2_vitl14": DinoSpec(1024, 24, 16, splits=(8, 12, 21)),
    # Same architecture families, small enough to train on a CPU (demo and tests only).
    "resnet_tiny": ResNetSpec((1, 1, 1, 1), stem=(8, 8, 16), planes=(8, 16, 32, 64)),
    "dinov2_tiny": DinoSpec(32, 4, 2, splits=(1, 2, 3), pretrain_grid=4),
}


def get_backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    return BACKBONES[name]


class FrozenBatchNorm(nn.Module):
    """BatchNorm2d in eval mode; `scale`/`bias`/`mean`/`var` map to weight/bias/running_*."""

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.param("mean", nn.initializers.zeros, (c,))
        var = self.param("var", nn.initializers.ones, (c,))
        inv = scale * jax.lax.rsqrt(var + self.epsilon)
        return x * inv.astype(x.dtype) + (bias - mean * inv).astype(x.dtype)


class PointwiseConv(nn.Module):
    """A 1x1 convolution (no bias) as a matmul over channels, with `nn.Conv`'s parameter
    (kernel (1, 1, in, out)): the same arithmetic, and XLA's CPU matmul beats its convolution
    for these shapes (measured in docs/PERFORMANCE.md)."""

    features: int
    stride: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.he_normal(),
                            (1, 1, x.shape[-1], self.features))
        dtype = self.dtype or jnp.promote_types(x.dtype, kernel.dtype)
        if self.stride > 1:
            x = x[:, :: self.stride, :: self.stride]
        return jnp.einsum("bhwi,io->bhwo", x.astype(dtype), kernel[0, 0].astype(dtype))


def _conv(features: int, kernel: int, stride: int = 1, dilation: int = 1, bias: bool = False,
          name: str | None = None, dtype: Any = None) -> nn.Module:
    if kernel == 1 and not bias:
        return PointwiseConv(features, stride, dtype, name=name)
    pad = dilation * (kernel // 2)
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), kernel_dilation=(dilation, dilation),
                   use_bias=bias, kernel_init=nn.initializers.he_normal(), dtype=dtype,
                   name=name)


def _max_pool(x: jax.Array, kernel: int, stride: int, pad: int) -> jax.Array:
    return nn.max_pool(x, (kernel, kernel), strides=(stride, stride),
                       padding=((pad, pad), (pad, pad)))


class Bottleneck(nn.Module):
    """torchvision's v1.5 Bottleneck (stride on the 3x3 conv)."""

    planes: int
    stride: int = 1
    dilation: int = 1
    downsample: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dt = self.dtype
        out = _conv(self.planes, 1, name="conv1", dtype=dt)(x)
        out = nn.relu(FrozenBatchNorm(name="bn1")(out))
        out = _conv(self.planes, 3, self.stride, self.dilation, name="conv2", dtype=dt)(out)
        out = nn.relu(FrozenBatchNorm(name="bn2")(out))
        out = FrozenBatchNorm(name="bn3")(_conv(self.planes * 4, 1, name="conv3", dtype=dt)(out))
        identity = x
        if self.downsample:
            identity = _conv(self.planes * 4, 1, self.stride, name="downsample_0", dtype=dt)(x)
            identity = FrozenBatchNorm(name="downsample_1")(identity)
        return nn.relu(out + identity)


def _resnet_layer(spec: ResNetSpec, index: int, inplanes: int, dilation: int, dtype: Any):
    """Blocks of layer `index` (1-4) with torchvision's `replace_stride_with_dilation =
    [False, True, True]` rule; returns (blocks, out channels, dilation after the layer)."""
    planes, stride = spec.planes[index - 1], (1 if index == 1 else 2)
    previous = dilation
    if index >= 3:  # dilate instead of stride
        dilation, stride = dilation * stride, 1
    out = planes * spec.expansion
    first = Bottleneck(planes, stride, previous, stride != 1 or inplanes != out, dtype)
    rest = [Bottleneck(planes, 1, dilation, dtype=dtype)
            for _ in range(spec.blocks[index - 1] - 1)]
    return [first, *rest], out, dilation


class PSPResNet(nn.Module):
    """Deep-stem ResNet of PSPNet/PFENet, output stride 8 (layer2..layer4 share one grid)."""

    spec: ResNetSpec
    dtype: Any = None  # compute dtype (parameters stay float32)

    def setup(self) -> None:
        s, dt = self.spec, self.dtype
        self.layer0_0 = _conv(s.stem[0], 3, 2, dtype=dt)
        self.layer0_1 = FrozenBatchNorm()
        self.layer0_3 = _conv(s.stem[1], 3, dtype=dt)
        self.layer0_4 = FrozenBatchNorm()
        self.layer0_6 = _conv(s.stem[2], 3, dtype=dt)
        self.layer0_7 = FrozenBatchNorm()
        inplanes, dilation = s.stem[2], 1
        self.layer1, inplanes, dilation = _resnet_layer(s, 1, inplanes, dilation, dt)
        self.layer2, inplanes, dilation = _resnet_layer(s, 2, inplanes, dilation, dt)
        self.layer3, inplanes, dilation = _resnet_layer(s, 3, inplanes, dilation, dt)
        self.layer4, inplanes, dilation = _resnet_layer(s, 4, inplanes, dilation, dt)

    def _stem(self, x: jax.Array) -> jax.Array:
        x = nn.relu(self.layer0_1(self.layer0_0(x)))
        x = nn.relu(self.layer0_4(self.layer0_3(x)))
        x = nn.relu(self.layer0_7(self.layer0_6(x)))
        return _max_pool(x, 3, 2, 1)

    @staticmethod
    def _run(blocks, x: jax.Array) -> jax.Array:
        for block in blocks:
            x = block(x)
        return x

    def features(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Normalised NHWC images -> (concat(layer2, layer3), layer3)."""
        x2 = self._run(self.layer2, self._run(self.layer1, self._stem(x)))
        x3 = self._run(self.layer3, x2)
        return jnp.concatenate([x2, x3], axis=-1), x3

    def final_stage(self, layer3: jax.Array) -> jax.Array:
        return self._run(self.layer4, layer3)

    def masked_final_stage(self, layer3: jax.Array, mask: jax.Array) -> jax.Array:
        return self.final_stage(layer3 * mask.astype(layer3.dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.final_stage(self.features(x)[1])


class _VGGStage(nn.Module):
    """One index range of torchvision's `vgg16_bn().features`, named by relative index."""

    items: tuple  # ("conv", width) / ("pool",) in order, each conv followed by BN and ReLU
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        index = 0
        for item in self.items:
            if item[0] == "pool":
                x = _max_pool(x, 2, 2, 0)
                index += 1
            else:
                x = _conv(item[1], 3, bias=True, name=str(index), dtype=self.dtype)(x)
                x = nn.relu(FrozenBatchNorm(name=str(index + 1))(x))
                index += 3
        return x


def _vgg_stage_items(spec: VGGSpec) -> list[tuple]:
    """The features list as ('conv', w) (3 indices: conv, bn, relu) / ('pool',) (1 index),
    cut at `spec.splits`."""
    flat, index = [], 0
    for w in spec.widths:
        flat.append((index, ("pool",) if w == "M" else ("conv", w)))
        index += 1 if w == "M" else 3
    return [tuple(item for i, item in flat if lo <= i < hi)
            for lo, hi in zip(spec.splits[:-1], spec.splits[1:], strict=True)]


class VGG16BN(nn.Module):
    """torchvision `vgg16_bn` features split into layer0..layer4 as the release does."""

    spec: VGGSpec
    dtype: Any = None  # compute dtype (parameters stay float32)

    def setup(self) -> None:
        stages = _vgg_stage_items(self.spec)
        # Paths layerK/N/... map to the release's `layerK.N.*` keys.
        self.layer0, self.layer1, self.layer2, self.layer3, self.layer4 = (
            _VGGStage(tuple(items), self.dtype) for items in stages
        )

    def features(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x2 = self.layer2(self.layer1(self.layer0(x)))
        x3 = self.layer3(x2)
        x2 = resize_bilinear(x2, x3.shape[1:3], align_corners=True)
        return jnp.concatenate([x2, x3], axis=-1), x3

    def final_stage(self, layer3: jax.Array) -> jax.Array:
        return self.layer4(layer3)

    def masked_final_stage(self, layer3: jax.Array, mask: jax.Array) -> jax.Array:
        return self.final_stage(layer3 * mask.astype(layer3.dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.final_stage(self.features(x)[1])


def make_backbone(name: str, dtype: Any = None) -> PSPResNet | VGG16BN | DinoV2:
    """The backbone `name`, computing in `dtype` (None: its inputs' dtype)."""
    spec = get_backbone_spec(name)
    if isinstance(spec, DinoSpec):
        return DinoV2(spec, dtype)
    return VGG16BN(spec, dtype) if isinstance(spec, VGGSpec) else PSPResNet(spec, dtype)
