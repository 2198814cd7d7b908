"""Train steps per second: ours (one jitted step) vs a PyTorch reference step (the release's
computation: frozen backbone under no_grad, frozen SAM, AdamW on the VRP encoder, BCE +
Dice), same weights, same batch, same device, same run.

    python benchmarks/train_step.py --backbone resnet50 --sam-type tiny --image-size 256 \\
        --batch 4 --repeats 5 [--cached-embeddings]

With `--cached-embeddings` both steps take the targets' SAM image embeddings as input
(computed once beforehand, float16 for ours as the on-disk cache stores them), as training
with the embedding cache does; without, both compute them in the step. Before timing, the
two losses are compared with dropout off (a parity check of the step's forward pass).
Prints one JSON line: steps per second for each and the ratio ours / torch (above 1: ours
faster).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from reference_pair import add_model_args, build_pair  # noqa: E402
from timing import interleaved_medians, torch_device, torch_synced  # noqa: E402

from vrp_sam_jax.evaluation.step import forward  # noqa: E402
from vrp_sam_jax.runtime import sharding as mesh_lib  # noqa: E402
from vrp_sam_jax.training import partition  # noqa: E402
from vrp_sam_jax.training import step as step_lib  # noqa: E402
from vrp_sam_jax.training.loss import bce_dice_loss  # noqa: E402
from vrp_sam_jax.transforms.preprocess import normalize_image  # noqa: E402


def torch_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, truth)
    p, y = torch.sigmoid(logits).flatten(1), truth.flatten(1)
    dice = 1 - (2 * (p * y).sum(-1) + 1) / (p.sum(-1) + y.sum(-1) + 1)
    return bce + dice.sum() / logits.shape[0]


def make_batch(size: int, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.stack([((yy - rng.uniform(0.3, 0.7) * size) ** 2
                       + (xx - rng.uniform(0.3, 0.7) * size) ** 2 < (0.2 * size) ** 2)
                      for _ in range(2 * batch)]).astype(np.uint8)
    return {"query_image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
            "support_images": rng.integers(0, 256, (batch, 1, size, size, 3), dtype=np.uint8),
            "support_masks": masks[:batch, None].astype(np.float32),
            "query_mask": masks[batch:], "query_ignore": np.zeros((batch, size, size), np.uint8),
            "valid": np.ones((batch,), bool)}


def measure(backbone: str, sam_type: str, image_size: int, batch_size: int, repeats: int = 5,
            cached_embeddings: bool = False) -> dict:
    """Train steps per second, ours and the PyTorch reference's, on the same batch."""
    pair = build_pair(backbone, sam_type, image_size)
    device = torch_device()
    torch_enc, torch_sam = pair.torch_encoder, pair.torch_sam
    torch_model = pair.torch_model.to(device)
    config, params = pair.config, pair.params
    batch = make_batch(image_size, batch_size)

    # PyTorch: the release's step (encoder trains; backbone and SAM frozen, BN in eval mode)
    for p in torch_model.parameters():
        p.requires_grad_(False)
    trained = [p for n, p in torch_enc.named_parameters()
               if n.split(".")[0] in ("downsample_query", "merge_1", "transformer_decoder")]
    for p in trained:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(trained, lr=1e-4, weight_decay=1e-6)

    def to_torch(x: np.ndarray, channels: int | None = None) -> torch.Tensor:
        x = np.moveaxis(x, -1, channels) if channels is not None else x
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)

    t_query = to_torch(normalize_image(batch["query_image"]), 1)
    t_support = to_torch(normalize_image(batch["support_images"]), 2)
    t_prompt = to_torch(batch["support_masks"])
    t_truth = to_torch(batch["query_mask"].astype(np.float32))

    def set_modes(train: bool) -> None:
        torch_model.train(train)
        for stage in (torch_enc.layer0, torch_enc.layer1, torch_enc.layer2, torch_enc.layer3,
                      torch_enc.layer4, torch_sam):
            stage.eval()

    set_modes(False)
    with torch.no_grad():
        cached = torch_model.embed(t_query) if cached_embeddings else None

    @torch_synced
    def torch_step(train: bool = True) -> float:
        set_modes(train)
        embeddings = cached
        if embeddings is None:
            with torch.no_grad():
                embeddings = torch_model.embed(t_query)
        loss = torch_loss(torch_model(t_query, t_support, t_prompt, embeddings), t_truth)
        if train:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    # ours: the jitted train step, encoder trainable, everything else frozen
    mesh = mesh_lib.make_mesh(devices=jax.devices()[:1])
    replicated = mesh_lib.replicated(mesh)
    if cached_embeddings:
        batch["embeddings"] = np.moveaxis(cached.cpu().numpy(), 1, -1).astype(np.float16)
    trainable, frozen = partition.split(params, ("encoder",))
    optax_opt = step_lib.make_optimizer(1e-4, 1000, 1e-6)
    state = jax.device_put(step_lib.init_state(trainable, optax_opt), replicated)
    frozen = jax.device_put(frozen, replicated)
    step = step_lib.jit_train_step(config, optax_opt, replicated, replicated,
                                   mesh_lib.batch_sharding(mesh), replicated)
    global_batch = mesh_lib.to_global(batch, mesh)
    rng = jax.random.key(0)

    ours_logits = forward(config, jax.device_put(params, replicated), global_batch,
                                   True)
    ours_eval_loss = float(bce_dice_loss(ours_logits, global_batch["query_mask"]))
    with torch.no_grad():
        torch_eval_loss = torch_step(train=False)

    holder = {"state": state}

    def ours_step():
        holder["state"], metrics = step(holder["state"], frozen, global_batch, rng)
        return jax.block_until_ready(metrics["loss"])

    start = time.perf_counter()
    ours_step()
    compile_s = time.perf_counter() - start
    torch_step()
    torch_s, ours_s = interleaved_medians(torch_step, ours_step, repeats=repeats)
    return {
        "benchmark": "train_step", "backbone": backbone, "sam_type": sam_type,
        "image": f"{image_size}x{image_size}", "batch": batch_size,
        "cached_embeddings": cached_embeddings, "torch_device": device,
        "loss_dropout_off": {"ours": ours_eval_loss, "torch": torch_eval_loss},
        "loss_diff_dropout_off": abs(ours_eval_loss - torch_eval_loss),
        "torch_steps_per_second": round(1 / torch_s, 3),
        "ours_steps_per_second": round(1 / ours_s, 3),
        "ours_compile_seconds": round(compile_s, 1), "ratio": round(torch_s / ours_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(parser, "resnet50", 256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cached-embeddings", action="store_true")
    args = parser.parse_args()
    print(json.dumps(measure(args.backbone, args.sam_type, args.image_size, args.batch,
                             args.repeats, args.cached_embeddings)))


if __name__ == "__main__":
    main()
