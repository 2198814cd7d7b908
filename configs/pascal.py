"""PASCAL-5i, the release's settings (spec section 6: AdamW lr 2e-4 as in the paper, weight
decay 1e-6, cosine decay, global batch 8, 100 epochs, seed 321).

    vrp-sam train --config configs/pascal.py:resnet50,mask --workdir runs/pascal_f0 \\
        --config.data.root=/data --config.data.fold=0 \\
        --config.init.sam_checkpoint=sam_vit_h_4b8939.pth \\
        --config.init.backbone_checkpoint=resnet50_v2.pth

`arg` = "<backbone>,<condition>": backbone in resnet50, resnet101, vgg16; condition in mask,
box, scribble, point. SAM type: --config.model.sam_type=vit_b|vit_l|vit_h.
"""

from vrp_sam_jax.training.config import base_config, parse_arg


def get_config(arg: str = "resnet50,mask"):
    return base_config("pascal", *parse_arg(arg))
