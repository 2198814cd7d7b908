"""One train step on 1 device, on 8 fake devices and on a 4x2 mesh (run by
tests/test_training.py with XLA_FLAGS=--xla_force_host_platform_device_count=8); prints the
losses and parameter differences as one JSON line.

The optimizer is SGD: its update is linear in the gradient, so equal parameters are equal
gradients, which is what partitioning could change. Adam's update is the same elementwise
function of the gradient on every mesh (its state is replicated like the parameters), and the
trainer's AdamW steps on 8 devices are compared with 2 processes x 4 devices in
test_multiprocess.py."""

import json

import jax
import numpy as np
import optax

from vrp_sam_jax.config import load_config, vrp_sam_config
from vrp_sam_jax.data import protocols
from vrp_sam_jax.data.pipeline import EpisodeLoader, EpisodeOptions
from vrp_sam_jax.data.sources import ToySource
from vrp_sam_jax.models import init_params
from vrp_sam_jax.runtime import sharding as M
from vrp_sam_jax.training import partition
from vrp_sam_jax.training import step as S

assert len(jax.devices()) == 8, jax.devices()
model_config = vrp_sam_config(load_config("toy", ["model.image_size=64"]))
params = jax.tree.map(np.asarray, init_params(model_config, 1))  # host copies: steps donate state
# SAM's image encoder frozen: the 4x2 mesh then splits it over the model_config axis
trainable, frozen = partition.split(params, ("encoder", "backbone", "sam/mask_decoder"))
episodes = protocols.training_episodes("toy", 0, 2, 0, 7)[:8]
options = EpisodeOptions(64, "scribble", training=True, seed=(7, 0))
batch = next(iter(EpisodeLoader(ToySource(), episodes, 8, options, drop_remainder=True,
                                process_index=0, process_count=1)))
report = {}
out = {}
for name, devices, shape in (("one", jax.devices()[:1], (1, 1)), ("eight", jax.devices(), (8, 1)),
                             ("four_by_two", jax.devices(), (4, 2))):
    optimizer = optax.sgd(0.1)
    mesh = M.make_mesh(*shape, devices=devices)
    rep = M.replicated(mesh)
    frozen_sharding = M.param_shardings(mesh, frozen)
    state = jax.device_put(S.init_state(trainable, optimizer), rep)
    step = S.jit_train_step(model_config, optimizer, rep, frozen_sharding,
                            M.batch_sharding(mesh), rep)
    new, metrics = step(state, jax.device_put(frozen, frozen_sharding), M.to_global(batch, mesh),
                        jax.random.key(3))
    out[name] = (float(metrics["loss"]), [np.asarray(x) for x in jax.tree.leaves(new.trainable)])
loss1, p1 = out["one"]
report["loss_one"] = loss1
for name in ("eight", "four_by_two"):
    loss, p = out[name]
    report[f"loss_{name}"] = loss
    report[f"param_diff_{name}"] = max(float(np.abs(a - b).max())
                                       for a, b in zip(p1, p, strict=True))
report["param_change"] = max(float(np.abs(a - b).max())
                             for a, b in zip(p1, jax.tree.leaves(trainable), strict=True))
print(json.dumps(report))
