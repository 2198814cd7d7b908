"""Train-step time per episode: ours (one jitted step) vs a PyTorch reference step (the
release's computation: frozen backbone under no_grad, frozen SAM, AdamW on the VRP encoder,
BCE + Dice), same weights, same batch, same run.

    python benchmarks/train_step.py --backbone resnet50 --sam-type tiny --image-size 256 \\
        --batch 4 --repeats 5

Before timing, the two losses are compared with dropout off (a parity check of the step's
forward pass). Prints one JSON line: median seconds per step and per episode for each, and
the ratio torch / ours (above 1: ours faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from reference_pair import add_model_args, build_pair  # noqa: E402
from timing import median_seconds  # noqa: E402

from vrp_sam_jax.preprocess import normalize_image  # noqa: E402
from vrp_sam_jax.training import mesh as mesh_lib  # noqa: E402
from vrp_sam_jax.training import partition  # noqa: E402
from vrp_sam_jax.training import step as step_lib  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(parser, "resnet50", 256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    pair = build_pair(args.backbone, args.sam_type, args.image_size)
    torch_enc, torch_sam, torch_model = pair.torch_encoder, pair.torch_sam, pair.torch_model
    config, params = pair.config, pair.params
    batch = make_batch(args.image_size, args.batch)

    # PyTorch: the release's step (encoder trains; backbone and SAM frozen, BN in eval mode)
    for p in torch_model.parameters():
        p.requires_grad_(False)
    trained = [p for n, p in torch_enc.named_parameters()
               if n.split(".")[0] in ("downsample_query", "merge_1", "transformer_decoder")]
    for p in trained:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(trained, lr=1e-4, weight_decay=1e-6)
    t_query = torch.from_numpy(np.moveaxis(normalize_image(batch["query_image"]), -1, 1).copy())
    t_support = torch.from_numpy(
        np.moveaxis(normalize_image(batch["support_images"]), -1, 2).copy())
    t_prompt = torch.from_numpy(batch["support_masks"])
    t_truth = torch.from_numpy(batch["query_mask"].astype(np.float32))

    def torch_step(train: bool = True) -> float:
        torch_model.train(train)
        for stage in (torch_enc.layer0, torch_enc.layer1, torch_enc.layer2, torch_enc.layer3,
                      torch_enc.layer4, torch_sam):
            stage.eval()
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
    trainable, frozen = partition.split(params, ("encoder",))
    optax_opt = step_lib.make_optimizer(1e-4, 1000, 1e-6)
    state = jax.device_put(step_lib.init_state(trainable, optax_opt), replicated)
    frozen = jax.device_put(frozen, replicated)
    step = step_lib.jit_train_step(config, optax_opt, replicated, replicated,
                                   mesh_lib.batch_sharding(mesh), replicated)
    global_batch = mesh_lib.to_global(batch, mesh)
    rng = jax.random.key(0)

    ours_logits = step_lib.forward(config, params, global_batch, True)
    from vrp_sam_jax.training.loss import bce_dice_loss

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
    torch_s = median_seconds(torch_step, args.repeats)
    ours_s = median_seconds(ours_step, args.repeats)
    print(json.dumps({
        "benchmark": "train_step", "backbone": args.backbone, "sam_type": args.sam_type,
        "image": f"{args.image_size}x{args.image_size}", "batch": args.batch,
        "device": str(jax.devices()[0].device_kind), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
        "loss_dropout_off": {"ours": ours_eval_loss, "torch": torch_eval_loss},
        "loss_diff_dropout_off": abs(ours_eval_loss - torch_eval_loss),
        "torch_seconds_per_step": round(torch_s, 3), "ours_seconds_per_step": round(ours_s, 3),
        "torch_seconds_per_episode": round(torch_s / args.batch, 4),
        "ours_seconds_per_episode": round(ours_s / args.batch, 4),
        "ours_compile_seconds": round(compile_s, 1), "ratio": round(torch_s / ours_s, 3),
        "versions": {"jax": jax.__version__, "torch": torch.__version__}}))


if __name__ == "__main__":
    main()
