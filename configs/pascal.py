"""PASCAL-5i with the release's settings (the paper, Sec. 4.1, and the release's `train.py`:
AdamW, lr 2e-4 as in the paper, weight decay 1e-6, cosine decay to 0 without warm-up, global
batch 8, 100 epochs, seed 321, BCE + Dice; only the VRP encoder trains).

    vrp-sam train --config pascal:resnet50,mask --workdir runs/pascal_f0 \\
        --config.data.root=/data --config.data.fold=0 \\
        --config.init.sam_checkpoint=sam_vit_h_4b8939.pth \\
        --config.init.backbone_checkpoint=resnet50_v2.pth

`arg` = "<backbone>,<condition>": backbone resnet50 | resnet101 | vgg16 | dinov2_vits14 |
dinov2_vitb14 | dinov2_vitl14 (the paper's DINOv2 row is ViT-L: `init.backbone_checkpoint=
dinov2_vitl14_pretrain.pth`), condition mask | box | scribble | point (either may be left
out). Every field below can be overridden with
`--config.<section>.<field>=<value>`.
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
            "benchmark": "pascal",
            "fold": 0,  # 0-3: the fold's 5 classes are novel (held out of training)
            "shots": 1,  # references per episode
            "condition": condition or "mask",  # the reference annotation simulated
            "root": "",  # holds VOC2012/JPEGImages and VOC2012/SegmentationClassAug
            "workers": 0,  # loader threads (0: one per core, at most 16)
            "prefetch_batches": 2,
            "val_protocol": "hsnet",  # validation episodes: HSNet's lists (seed 0)
            "val_episodes": 1000,
        },
        "train": {
            "seed": 321,  # the release's seed: episode stream, dropout
            "epochs": 100,
            "steps_per_epoch": 0,  # 0: one pass over the epoch's episodes
            "global_batch": 8,  # episodes per step over all devices (the release: 4 x 2)
            "lr": 2e-4,  # AdamW, cosine decay to 0 over all steps, no warm-up
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
