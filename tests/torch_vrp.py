"""A PyTorch VRP-SAM written from docs/COMPUTATION.md (the release's `model/VRP_encoder.py`,
`model/base/transformer_decoder.py` and `train.py`, restated), used as the
reference in parity tests and benchmarks. Attribute names are the release's, so
`state_dict()` of `TorchVRPEncoder` wrapped as `module.` is a `best_model.pt` in the release's
layout, and `TorchPSPResNet` / `TorchVGG16BN` state dicts are in the layouts of the PSPNet
`resnet50_v2.pth` files and torchvision's `vgg16_bn`. DINOv2 backbones are the official
`dinov2.models.vision_transformer` (PyPI `dinov2`), cut into stages as the release's author
describes (`vrp_sam_jax/models/dinov2.py` states the choices this reference shares)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vrp_sam_jax.models.backbones import DinoSpec, ResNetSpec, VGGSpec, get_backbone_spec


class TorchBottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class TorchPSPResNet(nn.Module):
    """Deep-stem ResNet, torchvision's replace_stride_with_dilation=[False, True, True]."""

    def __init__(self, spec: ResNetSpec):
        super().__init__()
        s0, s1, s2 = spec.stem
        self.conv1 = nn.Conv2d(3, s0, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(s0)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(s0, s1, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(s1)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(s1, s2, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(s2)
        self.relu3 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.inplanes, self.dilation = s2, 1
        self.layer1 = self._make_layer(spec.planes[0], spec.blocks[0], 1, False)
        self.layer2 = self._make_layer(spec.planes[1], spec.blocks[1], 2, False)
        self.layer3 = self._make_layer(spec.planes[2], spec.blocks[2], 2, True)
        self.layer4 = self._make_layer(spec.planes[3], spec.blocks[3], 2, True)

    def _make_layer(self, planes, blocks, stride, dilate):
        previous = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                nn.BatchNorm2d(planes * 4))
        layers = [TorchBottleneck(self.inplanes, planes, stride, previous, downsample)]
        self.inplanes = planes * 4
        layers += [TorchBottleneck(self.inplanes, planes, 1, self.dilation)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)


class TorchVGG16BN(nn.Module):
    """torchvision `vgg16_bn` (features only; the classifier is not used by VRP-SAM)."""

    def __init__(self, spec: VGGSpec):
        super().__init__()
        layers, c = [], 3
        for w in spec.widths:
            if w == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(True)]
                c = w
        layers.append(nn.MaxPool2d(2, 2))  # index 43, never used
        self.features = nn.Sequential(*layers)


def official_dinov2(spec: DinoSpec) -> nn.Module:
    """The official DinoVisionTransformer as `torch.hub`'s `dinov2_vit*14` builds it."""
    from dinov2.models.vision_transformer import DinoVisionTransformer

    return DinoVisionTransformer(
        img_size=spec.patch_size * spec.pretrain_grid, patch_size=spec.patch_size,
        embed_dim=spec.embed_dim, depth=spec.depth, num_heads=spec.num_heads,
        mlp_ratio=spec.mlp_ratio, init_values=1.0, ffn_layer="mlp", block_chunks=0)


class DinoTokens(nn.Module):
    """layer0 of a DINOv2 backbone: resize to a multiple of the patch (bilinear,
    align_corners=True), then the official `prepare_tokens_with_masks` (patch embedding, class
    token, bicubic-interpolated position embedding). Registers the parameters it uses."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.__dict__["vit"] = vit
        self.patch_embed, self.cls_token, self.pos_embed = (vit.patch_embed, vit.cls_token,
                                                            vit.pos_embed)

    def forward(self, img):
        p = self.vit.patch_size
        size = (img.shape[-1] // p) * p
        img = F.interpolate(img, (size, size), mode="bilinear", align_corners=True)
        return self.vit.prepare_tokens_with_masks(img)


def token_grid(tokens):
    """(B, 1 + g*g, C) tokens -> (B, C, g, g) patch-token map."""
    b, n, c = tokens.shape
    g = math.isqrt(n - 1)
    return tokens[:, 1:].transpose(1, 2).reshape(b, c, g, g)


def backbone_stages(name: str) -> tuple[nn.Module, list[nn.Sequential]]:
    """(backbone in its own file layout, [layer0..layer4] sharing its modules)."""
    spec = get_backbone_spec(name)
    if isinstance(spec, DinoSpec):
        vit = official_dinov2(spec)
        cuts = (0, *spec.splits, spec.depth)
        return vit, [DinoTokens(vit), *(nn.Sequential(*vit.blocks[lo:hi])
                                         for lo, hi in zip(cuts[:-1], cuts[1:], strict=True))]
    if isinstance(spec, VGGSpec):
        net = TorchVGG16BN(spec)
        return net, [nn.Sequential(*net.features[lo:hi])
                     for lo, hi in zip(spec.splits[:-1], spec.splits[1:], strict=True)]
    net = TorchPSPResNet(spec)
    layer0 = nn.Sequential(net.conv1, net.bn1, net.relu1, net.conv2, net.bn2, net.relu2,
                           net.conv3, net.bn3, net.relu3, net.maxpool)
    return net, [layer0, net.layer1, net.layer2, net.layer3, net.layer4]


def sine_pos(x):
    """DETR PositionEmbeddingSine(num_pos_feats=C/2, normalize=True), no mask."""
    b, c, h, w = x.shape
    n = c // 2
    not_mask = torch.ones((b, h, w), dtype=torch.float32)
    y_embed = not_mask.cumsum(1)
    x_embed = not_mask.cumsum(2)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(n, dtype=torch.float32)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / n)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class SelfAttentionLayer(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=0.0)
        self.norm = nn.LayerNorm(d)

    def forward(self, tgt):
        return self.norm(tgt + self.self_attn(tgt, tgt, value=tgt)[0])


class CrossAttentionLayer(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d, heads, dropout=0.0)
        self.norm = nn.LayerNorm(d)

    def forward(self, tgt, memory, pos):
        out = self.multihead_attn(query=tgt, key=memory + pos, value=memory)[0]
        return self.norm(tgt + out)


class TransformerDecoder(nn.Module):
    def __init__(self, num_queries, d, heads):
        super().__init__()
        self.supp_q_feat = nn.Embedding(num_queries, d)
        self.transformer_cross_attention_layers_0 = nn.ModuleList([CrossAttentionLayer(d, heads)])
        self.transformer_self_attention_layers_0 = nn.ModuleList([SelfAttentionLayer(d, heads)])
        self.transformer_cross_attention_layers = nn.ModuleList([CrossAttentionLayer(d, heads)])
        self.transformer_self_attention_layers = nn.ModuleList([SelfAttentionLayer(d, heads)])

    def forward(self, query_feat, supp_feat):
        bs = query_feat.shape[0]
        pos_q = sine_pos(query_feat).flatten(2).permute(2, 0, 1)
        src_q = query_feat.flatten(2).permute(2, 0, 1)
        pos_s = sine_pos(supp_feat).flatten(2).permute(2, 0, 1)
        src_s = supp_feat.flatten(2).permute(2, 0, 1)
        out = self.supp_q_feat.weight.unsqueeze(1).repeat(1, bs, 1)
        out = self.transformer_cross_attention_layers_0[0](out, src_s, pos_s)
        out = self.transformer_self_attention_layers_0[0](out)
        out = self.transformer_cross_attention_layers[0](out, src_q, pos_q)
        out = self.transformer_self_attention_layers[0](out)
        return out.transpose(0, 1)


class TorchVRPEncoder(nn.Module):
    """The release's VRP_encoder with the condition already applied to the prompt mask."""

    def __init__(self, backbone: str, hidden_dim: int = 256, num_queries: int = 50,
                 heads: int = 4):
        super().__init__()
        # the whole backbone in its own layout (PSPNet, torchvision) for writing backbone
        # files; not registered, so `state_dict()` has exactly the release's keys
        net, stages = backbone_stages(backbone)
        self.__dict__["backbone_net"] = net
        self.is_vgg = isinstance(get_backbone_spec(backbone), VGGSpec)
        self.is_vit = isinstance(get_backbone_spec(backbone), DinoSpec)
        self.layer0, self.layer1, self.layer2, self.layer3, self.layer4 = stages
        fea_dim = get_backbone_spec(backbone).feature_dim
        self.downsample_query = nn.Sequential(
            nn.Conv2d(fea_dim, hidden_dim, 1, bias=False), nn.ReLU(True), nn.Dropout2d(0.5))
        self.merge_1 = nn.Sequential(
            nn.Conv2d(hidden_dim * 2 + 1, hidden_dim, 1, bias=False), nn.ReLU(True))
        self.transformer_decoder = TransformerDecoder(num_queries, hidden_dim, heads)

    def state_dict_release(self) -> dict[str, np.ndarray]:
        """`best_model.pt` layout: the DistributedDataParallel prefix `module.`."""
        return {f"module.{k}": v.detach().numpy() for k, v in self.state_dict().items()}

    def features(self, img):
        f2 = self.layer2(self.layer1(self.layer0(img)))
        f3 = self.layer3(f2)
        if self.is_vit:  # layer3 stays tokens: layer4 needs the class token
            return torch.cat([token_grid(f2), token_grid(f3)], 1), f3
        if self.is_vgg:
            f2 = F.interpolate(f2, size=f3.shape[-2:], mode="bilinear", align_corners=True)
        return torch.cat([f2, f3], 1), f3

    @staticmethod
    def pseudo_mask(s4, q4, mask):
        mask = F.interpolate(mask, size=s4.shape[-2:], mode="bilinear", align_corners=True)
        s = (s4 * mask).flatten(2).permute(0, 2, 1)
        q = q4.flatten(2)
        sim = torch.bmm(s, q) / (torch.bmm(s.norm(2, 2, True), q.norm(2, 1, True)) + 1e-7)
        b, _, h, w = q4.shape
        return sim.max(1)[0].reshape(b, 1, h, w)

    def final_stage(self, layer3, mask=None):
        """layer4 of layer3 (masked by `mask` on the feature grid when given)."""
        if not self.is_vit:
            return self.layer4(layer3 if mask is None else layer3 * mask)
        if mask is not None:  # patch tokens masked, the class token kept
            keep = torch.cat([torch.ones_like(mask.flatten(1)[:, :1]), mask.flatten(1)], 1)
            layer3 = layer3 * keep[:, :, None]
        return token_grid(self.layer4(layer3))

    def mean_prior(self, prompt_masks, query_img, support_imgs):
        """GP-SAM's prior: the pseudo mask of the query for each of K references (B, K, 3,
        S, S) with prompt masks (B, K, S, S), averaged over K -> (B, 1, h, w)."""
        with torch.no_grad():
            q4 = self.final_stage(self.features(query_img)[1])
            priors = []
            for k in range(support_imgs.shape[1]):
                s_feat, s3 = self.features(support_imgs[:, k])
                m = F.interpolate(prompt_masks[:, k:k + 1].float(), size=s_feat.shape[-2:],
                                  mode="nearest")
                priors.append(self.pseudo_mask(self.final_stage(s3, m), q4, m))
            return torch.stack(priors).mean(0)

    def forward(self, prompt_mask, query_img, support_img):
        with torch.no_grad():
            q_feat, q3 = self.features(query_img)
            q4 = self.final_stage(q3)
            s_feat, s3 = self.features(support_img)
            mask = F.interpolate(prompt_mask.unsqueeze(1).float(), size=s_feat.shape[-2:],
                                 mode="nearest")
            s4 = self.final_stage(s3, mask)
            prior = self.pseudo_mask(s4, q4, mask)
        q_feat = self.downsample_query(q_feat)
        s_feat = self.downsample_query(s_feat)
        h, w = s_feat.shape[-2:]
        area = F.avg_pool2d(mask, (h, w)) * h * w + 0.0005
        proto = F.avg_pool2d(s_feat * mask, (h, w)) * h * w / area
        proto = proto.repeat(1, 1, q_feat.shape[2], q_feat.shape[3])
        s_merged = self.merge_1(torch.cat([s_feat, proto, mask * 10], 1))
        q_merged = self.merge_1(torch.cat([q_feat, proto, prior * 10], 1))
        return self.transformer_decoder(q_merged, s_merged)


class TorchVRPSam(nn.Module):
    """Release inference: prompts of K shots concatenated, SAM decodes, logits to 512."""

    def __init__(self, encoder: TorchVRPEncoder, sam, image_size: int = 512):
        super().__init__()
        self.encoder, self.sam, self.image_size = encoder, sam, image_size

    def embed(self, query_img):
        size = self.sam.image_encoder.img_size
        x = F.interpolate(query_img, (size, size), mode="bilinear", align_corners=True)
        return self.sam.image_encoder(x)

    def forward(self, query_img, support_imgs, prompt_masks, embeddings=None):
        """query (B,3,S,S); supports (B,K,3,S,S); prompt masks (B,K,S,S) -> logits (B,S,S)."""
        protos = torch.cat([self.encoder(prompt_masks[:, k], query_img, support_imgs[:, k])
                            for k in range(support_imgs.shape[1])], dim=1)
        if embeddings is None:
            embeddings = self.embed(query_img)
        pe = self.sam.prompt_encoder
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            protos.shape[0], -1, *pe.image_embedding_size)
        logits = []
        for b in range(protos.shape[0]):  # the official decoder takes one image at a time
            low, _ = self.sam.mask_decoder(
                image_embeddings=embeddings[b : b + 1], image_pe=pe.get_dense_pe(),
                sparse_prompt_embeddings=protos[b : b + 1], dense_prompt_embeddings=dense[b:b+1],
                multimask_output=False)
            logits.append(low)
        low = torch.cat(logits, 0)
        s = self.image_size
        return F.interpolate(low, (s, s), mode="bilinear", align_corners=True)[:, 0]


class TorchVRPSam2(TorchVRPSam):
    """The same with the official SAM 2 (`SAM2Base`) as the segmenter, as
    docs/COMPUTATION.md §12 states it: the target resized to SAM 2's input (bilinear,
    align_corners=True), `set_image`'s features (embedding + no-memory embedding, projected
    high-res maps), the VRP prompts as the only sparse prompts with the no-mask dense prompt,
    the mask decoder with `multimask_output=False` (token 0's mask: no stability fallback),
    its 256 grid resized to the image."""

    def embed(self, query_img):
        size = self.sam.image_size
        x = F.interpolate(query_img, (size, size), mode="bilinear", align_corners=True)
        backbone_out = self.sam.forward_image(x)
        _, feats, _, sizes = self.sam._prepare_backbone_features(backbone_out)
        feats[-1] = feats[-1] + self.sam.no_mem_embed
        b = x.shape[0]
        return [f.permute(1, 2, 0).reshape(b, -1, *hw)
                for f, hw in zip(feats, sizes, strict=True)]

    def forward(self, query_img, support_imgs, prompt_masks, embeddings=None):
        protos = torch.cat([self.encoder(prompt_masks[:, k], query_img, support_imgs[:, k])
                            for k in range(support_imgs.shape[1])], dim=1)
        s0, s1, embedding = self.embed(query_img)
        sparse, dense = self.sam.sam_prompt_encoder(points=None, boxes=None, masks=None)
        sparse = torch.cat([sparse.expand(protos.shape[0], -1, -1), protos], dim=1)
        decoder = self.sam.sam_mask_decoder
        fallback, decoder.dynamic_multimask_via_stability = \
            decoder.dynamic_multimask_via_stability, False
        try:
            low, _, _, _ = decoder(
                image_embeddings=embedding,
                image_pe=self.sam.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense.expand(protos.shape[0], -1, -1, -1),
                multimask_output=False, repeat_image=False, high_res_features=[s0, s1])
        finally:
            decoder.dynamic_multimask_via_stability = fallback
        s = self.image_size
        return F.interpolate(low, (s, s), mode="bilinear", align_corners=True)[:, 0]


def nchw(x: np.ndarray) -> torch.Tensor:
    """An NHWC array as an NCHW tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, -3)))


def nhwc(x: torch.Tensor) -> np.ndarray:
    return np.moveaxis(x.detach().numpy(), -3, -1)


def rel_err(got, ref) -> float:
    """max |got - ref| / max |ref|."""
    return float(np.abs(np.asarray(got) - ref).max() / np.abs(ref).max())


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Random values for every parameter and BatchNorm statistic (none left at 0 or 1), in
    ranges that keep activations of deep nets finite and non-trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * math.sqrt(2.0 / fan_in))
            elif name.endswith(("weight", "gamma")):  # norm and layer scales
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        for name, buf in module.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
            elif name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))
    return module.eval()
