"""COCO-20i, the release's settings (spec section 6: AdamW lr 1e-4, weight decay 1e-6,
cosine decay, global batch 8, 50 epochs, seed 321). The argument and the overrides are as in
`configs/pascal.py`, e.g. `--config configs/coco.py:resnet101,point --config.data.fold=3`;
the dataset root holds `COCO2014/` (masks from `vrp-sam prepare-coco`).
"""

from vrp_sam_jax.training.config import base_config, parse_arg


def get_config(arg: str = "resnet50,mask"):
    return base_config("coco", *parse_arg(arg))
