"""A trained model back from a work directory (`vrp-sam train --workdir`): the config it was
trained with, and the full parameter tree (frozen parts from their checkpoints or, for random
initialisations, from `workdir/frozen`; trained parts from the best or the latest checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp

from vrp_sam_jax.image_io import InputError
from vrp_sam_jax.models import VRPSamConfig
from vrp_sam_jax.models.vrp_sam import abstract_params
from vrp_sam_jax.training import partition
from vrp_sam_jax.training.checkpointing import Checkpoints
from vrp_sam_jax.training.config import model_config
from vrp_sam_jax.training.trainer import initial_params

WHICH = ("best", "latest")


def read_config(workdir: str | Path) -> ml_collections.ConfigDict:
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise InputError(f"{workdir}: not a training work directory (no config.json)")
    data = json.loads(path.read_text())
    data["train"]["trainable"] = tuple(data["train"]["trainable"])
    return ml_collections.ConfigDict(data)


def restore_trained(workdir: str | Path, which: str = "best"
                    ) -> tuple[ml_collections.ConfigDict, VRPSamConfig, dict, dict]:
    """-> (config, model config, params, info {step, which, metrics})."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    workdir = Path(workdir).absolute()
    config = read_config(workdir)
    model = model_config(config)
    params = initial_params(config, model, workdir)
    abstract_trainable, _ = partition.split(abstract_params(model),
                                            tuple(config.train.trainable))
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract_trainable = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract_trainable)
    checkpoints = Checkpoints(workdir, async_save=False)
    try:
        if which == "best" and checkpoints.best_step() is not None:
            trainable, metrics = checkpoints.restore_best(abstract_trainable)
            info = {"step": checkpoints.best_step(), "which": "best", "metrics": metrics}
        else:
            if checkpoints.latest_step() is None:
                raise InputError(f"{workdir}: no checkpoint yet")
            restored = checkpoints.latest.restore(
                checkpoints.latest_step(),
                args=ocp.args.Composite(state=ocp.args.StandardRestore()))
            trainable = jax.tree.map(lambda a, x: jax.device_put(a, x.sharding),
                                     dict(restored["state"]["trainable"]), abstract_trainable)
            info = {"step": checkpoints.latest_step(), "which": "latest", "metrics": {}}
    finally:
        checkpoints.close()
    return config, model, partition.merge(trainable, params), info
