"""The names the command line, the configs and the library share, in one jax-free module
(the command line builds its parser from these without importing JAX)."""

from __future__ import annotations

# *_tiny: tests, toy
BACKBONES = ("resnet50", "resnet101", "vgg16", "dinov2_vits14", "dinov2_vitb14",
             "dinov2_vitl14", "resnet_tiny", "dinov2_tiny")
PAPER_BACKBONES = ("resnet50", "resnet101", "vgg16", "dinov2_vitl14")
SAM_TYPES = ("vit_b", "vit_l", "vit_h", "tiny")  # tiny: tests, toy
# SAM 2's image models, named as the official checkpoints are (sam2.1_toy: tests)
SAM2_TYPES = tuple(f"{release}_hiera_{size}" for release in ("sam2.1", "sam2")
                   for size in ("tiny", "small", "base_plus", "large")) + ("sam2.1_toy",)
SAM_MODEL_TYPES = SAM_TYPES + SAM2_TYPES  # what `model.sam_type` and --sam-type take
CONDITIONS = ("mask", "box", "point", "scribble")  # the reference annotation kinds
# The command line's option for each kind (`vrp-sam predict --reference-points`: plural there,
# as a person gives one or more points).
REFERENCE_OPTIONS = {kind: f"--reference-{'points' if kind == 'point' else kind}"
                     for kind in CONDITIONS}
BENCHMARKS = ("pascal", "coco", "fss", "toy", "deepglobe", "isic", "lung", "lvis")
# PATNet's cross-domain benchmark (slei109/PATNet): evaluation only, no folds
PATNET_BENCHMARKS = ("deepglobe", "isic", "lung", "fss")
PACKABLE_BENCHMARKS = ("pascal", "coco", "fss", "deepglobe", "isic", "lung", "lvis")  # pack
CROSS_DOMAIN = "coco2pascal"  # COCO-20i-trained models on PASCAL's COCO-unseen classes
PROTOCOLS = ("hsnet", "vrp", "patnet", "matcher")  # evaluation episode samplers
LOSSES = ("bce+dice", "bce", "dice")  # `train.loss` (the paper's Table 5)
QUERY_INITS = ("random", "foreground", "background", "half")  # `model.query_init` (Table 6)
METHODS = ("vrp", "gp-sam")  # what `evaluate` / `predict` prompt SAM with
GP_PROMPTS = ("point", "box", "box+point")  # GP-SAM's geometric prompts (Table 3)
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("auto", "blocked", "xla", "cudnn")  # SAM image-encoder attention paths
CHECKPOINTS = ("best", "latest")  # which checkpoint of a training run (or a step number)
EXPORT_FORMATS = ("jax", "release")

# The field's seeds: HSNet's episode lists draw from numpy's legacy RNG seeded 0; the VRP-SAM
# release seeds its training, its episode sampler and its evaluation annotations with 321.
HSNET_SEED = 0
VRP_SEED = 321
PATNET_SEED = 0  # PATNet's test.py: utils.fix_randseed(0) before its episodes are drawn
MATCHER_SEED = 0  # Matcher's main_oss.py: utils.fix_randseed(0) before LVIS-92i's episodes
