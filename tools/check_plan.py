"""`vrp-sam plan`'s train-step FLOPs against a compile made here the trainer's way.

    python tools/check_plan.py --config pascal:resnet50,mask --topology v5e:2x2 \
        --config.cache.embeddings=True --config.train.global_batch=8

`plan` builds the step's inputs as shapes (`plan.steps`: one toy episode's arrays repeated);
this script builds them as the trainer does (`training/trainer.py`): the parameter tree the
trainer restores into, split as it splits it, a batch drawn by the `EpisodeLoader` at the
config's size, shots and condition, the trainer's optimizer with a schedule, SAM's target
embeddings as the cache stores them. It compiles that step for the same slice, then
the step `plan` reports (`train_cached` where the cache serves it, else `train`), and prints
one JSON line: both FLOPs per chip, their ratio, and whether they agree within 5% (exit 1 if
not). Compiling ViT-H's step takes minutes on a small host.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np

from vrp_sam_jax.config import load_config, vrp_sam_config
from vrp_sam_jax.data import protocols
from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions
from vrp_sam_jax.data.sources import ToySource
from vrp_sam_jax.models import VRPSam, abstract_params
from vrp_sam_jax.runtime import sharding
from vrp_sam_jax.training import partition
from vrp_sam_jax.training import plan as planner
from vrp_sam_jax.training import step as step_lib
from vrp_sam_jax.training.embedding_cache import DTYPES
from vrp_sam_jax.training.trainer import trains_sam_image_encoder
from vrp_sam_jax.transforms.preprocess import normalize_image

TOLERANCE = 0.05


def trainer_way(config, mesh, cached: bool) -> float:
    """FLOPs per device of the train step built as the trainer builds it (`cached`: the
    target embeddings in the batch, from the cache)."""
    model_config = vrp_sam_config(config)
    params = abstract_params(model_config)  # the tree the trainer restores checkpoints into
    trainable, frozen = partition.split(params, tuple(config.train.trainable))
    optimizer = step_lib.make_optimizer(config.train.lr, 1000, config.train.weight_decay,
                                        config.train.b1, config.train.b2)
    state = jax.eval_shape(lambda t: step_lib.init_state(t, optimizer), trainable)
    episodes = protocols.training_episodes("toy", 0, config.data.shots, 0, config.train.seed)
    options = EpisodeOptions(model_config.image_size, config.data.condition, training=True,
                             seed=(config.train.seed, 0))
    batch = next(iter(EpisodeLoader(ToySource(), episodes, config.train.global_batch, options,
                                    drop_remainder=True, process_index=0, process_count=1,
                                    workers=1)))
    if cached:
        embedding = jax.eval_shape(
            lambda p, x: VRPSam(model_config).apply({"params": p}, normalize_image(x),
                                             method=VRPSam.embed_targets),
            params, batch["query_image"])
        batch["embeddings"] = np.zeros(embedding.shape, DTYPES[config.cache.dtype])
    replicated, rows = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    frozen_sharding = sharding.param_shardings(mesh, frozen)

    def placed(tree, where):
        if not isinstance(where, jax.sharding.Sharding):
            return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                                                  sharding=s), tree, where)
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                                           sharding=where), tree)

    step = step_lib.jit_train_step(model_config, optimizer, replicated, frozen_sharding, rows,
                                   replicated, loss=config.train.loss)
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated)
    with planner.not_cached():
        compiled = step.lower(placed(state, replicated), placed(frozen, frozen_sharding),
                              placed(batch, rows), key).compile()
    cost = compiled.cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--topology", required=True)
    args, overrides = parser.parse_known_args(argv)
    config = load_config(args.config, overrides)  # it strips their `--config.` prefix
    devices = planner.topology_devices(args.topology)
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.model, devices=devices)
    # the trainer feeds cached embeddings only where SAM's image encoder is frozen
    cached = bool(config.cache.embeddings) and not trains_sam_image_encoder(
        tuple(config.train.trainable))
    name = "train_cached" if cached else "train"
    start = time.monotonic()
    ours = trainer_way(config, mesh, cached)
    ours_seconds = time.monotonic() - start
    print(f"compiling plan's {name} for {args.topology} ...", file=sys.stderr, flush=True)
    # what `vrp-sam plan` reports for that step (plan.plan measures each of plan.steps so)
    planned = planner.measure(planner.steps(config, mesh)[name], None)
    ratio = planned["flops_per_chip"] / ours
    print(json.dumps({"config": args.config, "overrides": overrides,
                      "topology": args.topology, "step": name,
                      "plan_flops_per_chip": planned["flops_per_chip"],
                      "independent_flops_per_chip": ours, "ratio": ratio,
                      "within": TOLERANCE, "agree": abs(ratio - 1) <= TOLERANCE,
                      "independent_compile_seconds": round(ours_seconds, 1),
                      "plan_compile_seconds": planned["compile_seconds"]}))
    return 0 if abs(ratio - 1) <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
