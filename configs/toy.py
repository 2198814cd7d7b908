"""The embedded toy benchmark with a tiny SAM and backbone, randomly initialised: what
`vrp-sam demo` trains, on a 2-core CPU in minutes.

    vrp-sam train --config toy --workdir runs/toy

A random SAM cannot stay frozen the way a pretrained one does in the release, so here the whole
model trains (backbone BatchNorm statistics excepted), where the release trains only the VRP
encoder; with SAM's image encoder trained, embeddings cannot be cached. The toy's training
images hold no novel category (a random backbone has no prior that would keep novel objects
from being learnt as background).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "model": {
            "backbone": "resnet_tiny",  # a small deep-stem ResNet (tests, demo)
            "sam_type": "tiny",  # a small SAM of the same structure
            "image_size": 128,
            "num_queries": 16,
            "num_heads": 4,
            "query_init": "random",  # random | foreground | background | half (Table 6)
            "compute_dtype": "float32",
            "attention": "auto",
        },
        "init": {
            "sam_checkpoint": "",
            "backbone_checkpoint": "",
            "random": True,  # random SAM and backbone, kept in <workdir>/frozen
            "seed": 0,
        },
        "data": {
            "benchmark": "toy",  # generated on the fly: no root, no download
            "fold": 0,
            "shots": 1,
            "condition": "mask",
            "root": "",
            "workers": 0,
            "prefetch_batches": 2,
            "val_protocol": "hsnet",
            "val_episodes": 200,
        },
        "train": {
            "seed": 321,
            "epochs": 8,
            "steps_per_epoch": 50,
            "global_batch": 8,
            "lr": 2e-3,
            "weight_decay": 1e-4,
            "b1": 0.9,
            "b2": 0.999,
            "loss": "bce+dice",  # bce+dice (the release) | bce | dice (Table 5)
            "trainable": ("encoder", "backbone", "sam"),
        },
        "mesh": {"data": -1, "model": 1},
        "cache": {"embeddings": False, "dir": "", "dtype": "float16", "shared": True},
        "checkpoint": {"every_steps": 50, "async_save": True},
        "log": {"every_steps": 10, "val_every_epochs": 2},
    })
