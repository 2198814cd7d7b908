"""The same evaluation on 1 device, on 8 fake devices and with another batch size (run by
tests/test_evaluation.py with 8 fake CPU devices); prints the areas as one JSON line."""

import json

import jax

from vrp_sam_jax.config import load_config, vrp_sam_config
from vrp_sam_jax.data import protocols, splits
from vrp_sam_jax.data.sources import ToySource
from vrp_sam_jax.evaluation.episodes import evaluate_params
from vrp_sam_jax.models import init_params
from vrp_sam_jax.runtime.sharding import make_mesh

model_config = vrp_sam_config(load_config("toy", ["model.image_size=64"]))
params = init_params(model_config, 4)
episodes = protocols.episodes("toy", 1, 2, "vrp", 21)
out = {}
for name, devices, batch in (("one", jax.devices()[:1], 8), ("eight", jax.devices(), 8),
                             ("eight_again", jax.devices(), 16)):
    meter = evaluate_params(model_config, params, ToySource(), episodes,
                            splits.test_classes("toy", 1), "scribble",
                            make_mesh(devices=devices), batch, progress=False)
    out[name] = meter.areas.tolist()
print(json.dumps(out))
