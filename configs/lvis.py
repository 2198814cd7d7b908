"""LVIS-92i (Matcher's 10 folds of 92 categories; `vrp_sam_jax.data.lvis`): training on a
fold's base categories (Matcher's `class_ids_trn`: the training file's categories with more
than `shots` images, less the fold's test categories), validation with Matcher's sampler.
VRP-SAM's paper has no LVIS run; the settings are the release's COCO-20i ones (AdamW, lr
1e-4, weight decay 1e-6, cosine decay to 0 without warm-up, global batch 8, 50 epochs, seed
321, BCE + Dice; only the VRP encoder trains), as the community fork that added LVIS
(ga1i13o/VRP-SAM, README) trains every benchmark. The
dataset root holds `LVIS/` with `coco/train2017`, `coco/val2017` and Matcher's
`lvis_train.pkl`, `lvis_val.pkl` (`vrp-sam prepare-lvis` writes them from LVIS v1).

    vrp-sam train --config lvis:resnet50,mask --workdir runs/lvis_f3 \\
        --config.data.root=/data --config.data.fold=3 \\
        --config.init.sam_checkpoint=sam_vit_h_4b8939.pth \\
        --config.init.backbone_checkpoint=resnet50_v2.pth

`arg` = "<backbone>,<condition>", as in `configs/pascal.py`. Every field below can be
overridden with `--config.<section>.<field>=<value>`.
"""

import ml_collections


def get_config(arg: str = "resnet50,mask") -> ml_collections.ConfigDict:
    backbone, _, condition = arg.partition(",")
    return ml_collections.ConfigDict({
        "model": {
            "backbone": backbone or "resnet50",  # PSPNet ResNet-50/101, VGG-16-BN or DINOv2
            "sam_type": "vit_h",  # vit_b | vit_l | vit_h | sam2.1_hiera_t|s|b+|l: the checkpoint's
            "image_size": 512,  # the grid of images, prompt masks and logits
            "num_queries": 50,  # learnable queries per reference (prompt embeddings)
            "num_heads": 4,  # attention heads of the VRP encoder
            "query_init": "random",  # random | foreground | background | half (Table 6)
            # frozen backbone and SAM image encoder in bfloat16 | float16 (parameters, VRP
            # encoder, decoder, loss and logits stay float32)
            "compute_dtype": "float32",
            "attention": "auto",  # SAM image encoder: auto | blocked | xla | cudnn
        },
        "init": {
            "sam_checkpoint": "",  # official SAM .pth or `vrp-sam convert-sam` directory
            # resnet{50,101}_v2.pth, vgg16_bn, dinov2_vit*14_pretrain.pth, or a converted dir
            "backbone_checkpoint": "",
            "random": False,  # random frozen weights instead (tests): nothing to load
            "seed": 0,  # initialisation of the VRP encoder
        },
        "data": {
            "benchmark": "lvis",
            "fold": 0,  # 0-9: the fold's categories f, f+10, ... are novel (held out)
            "shots": 1,  # references per episode
            "condition": condition or "mask",  # the reference annotation simulated
            "root": "",  # holds LVIS/: coco/{train,val}2017, lvis_{train,val}.pkl
            "workers": 0,  # loader threads (0: one per core, at most 16)
            "prefetch_batches": 2,
            "val_protocol": "matcher",  # validation episodes: Matcher's sampler (seed 0)
            "val_episodes": 2300,
        },
        "train": {
            "seed": 321,  # the release's seed: episode stream, dropout
            "epochs": 50,
            "steps_per_epoch": 0,  # 0: one pass over the epoch's episodes
            "global_batch": 8,  # episodes per step over all devices (the release: 4 x 2)
            "lr": 1e-4,  # AdamW, cosine decay to 0 over all steps, no warm-up
            "weight_decay": 1e-6,
            "b1": 0.9,
            "b2": 0.999,
            "loss": "bce+dice",  # bce+dice (the release) | bce | dice (Table 5)
            # parameter paths trained ("part/module/..."); BatchNorm statistics never train
            "trainable": ("encoder",),
        },
        "mesh": {"data": -1, "model": 1},  # (data, model) axes; -1: the devices left
        "cache": {
            "embeddings": True,  # SAM image embeddings computed once, read from disk
            "dir": "",  # default: <data.root>/vrp_sam_embedding_cache
            "dtype": "float16",  # storage dtype: float16 | float32
            # True: cache.dir is seen by every process, each embeds 1/N of the images;
            # False: each process embeds all of them into its own (host-local) cache.dir
            "shared": True,
        },
        "checkpoint": {"every_steps": 1000, "async_save": True},
        "log": {"every_steps": 50, "val_every_epochs": 1},
    })
