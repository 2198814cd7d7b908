"""Training configurations (ml_collections), as the files under `configs/` build them.

A config file defines `get_config(arg=None)`; `load_config("configs/pascal.py:resnet50,box")`
passes the part after `:` as `arg`. Any field can then be overridden with `field=value`
strings (`train.lr=2e-4`, `data.fold=2`), checked against the field's type.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import ml_collections

from vrp_sam_jax.conditions import CONDITIONS
from vrp_sam_jax.image_io import InputError
from vrp_sam_jax.models import VRPSamConfig

BACKBONES = ("resnet50", "resnet101", "vgg16")
ALIASES = {"fold": "data.fold", "shots": "data.shots", "condition": "data.condition"}
# Fields that must match between a run and the checkpoint it resumes from.
RESUME_KEYS = ("model.backbone", "model.sam_type", "model.image_size", "model.num_queries",
               "model.num_heads", "data.benchmark", "data.fold", "data.shots", "data.condition",
               "train.seed", "train.global_batch", "train.trainable", "train.epochs",
               "train.steps_per_epoch")


def base_config(benchmark: str, backbone: str = "resnet50", condition: str = "mask",
                sam_type: str = "vit_h") -> ml_collections.ConfigDict:
    """The release's settings (spec section 6) for a real benchmark."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")
    pascal = benchmark == "pascal"
    return ml_collections.ConfigDict({
        "model": {"backbone": backbone, "sam_type": sam_type, "image_size": 512,
                  "num_queries": 50, "num_heads": 4,
                  # "bfloat16": the frozen backbone and SAM image encoder compute in bf16
                  # (parameters, VRP encoder, decoder, loss and logits stay float32)
                  "compute_dtype": "float32",
                  "attention": "auto"},  # SAM image encoder: auto | blocked | xla | cudnn
        "init": {
            "sam_checkpoint": "",  # official .pth or `vrp-sam convert-sam` directory
            "backbone_checkpoint": "",  # PSPNet/torchvision file or converted directory
            "random": False,  # allow random frozen weights (toy, tests): no checkpoints
            "seed": 0,
        },
        "data": {"benchmark": benchmark, "fold": 0, "shots": 1, "condition": condition,
                 "root": "", "workers": 0, "prefetch_batches": 2,
                 "val_protocol": "hsnet", "val_episodes": 1000},
        "train": {
            "seed": 321, "epochs": 100 if pascal else 50, "steps_per_epoch": 0,
            "global_batch": 8, "lr": 2e-4 if pascal else 1e-4, "weight_decay": 1e-6,
            "b1": 0.9, "b2": 0.999,
            # parameter paths trained (prefixes of "part/module/..."); BatchNorm statistics
            # are never trained
            "trainable": ("encoder",),
        },
        "mesh": {"data": -1, "model": 1},
        "cache": {"embeddings": True, "dir": "", "dtype": "float16"},
        "checkpoint": {"every_steps": 1000, "async_save": True},
        "log": {"every_steps": 50, "val_every_epochs": 1, "progress": True},
    })


def parse_arg(arg: str) -> tuple[str, str]:
    """"<backbone>,<condition>" (either part may be left out) -> (backbone, condition)."""
    backbone, _, condition = arg.partition(",")
    backbone, condition = backbone or "resnet50", condition or "mask"
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
    return backbone, condition


def toy_config() -> ml_collections.ConfigDict:
    """The embedded demo: tiny SAM and backbone with random weights on the toy benchmark,
    small enough for a 2-core CPU in minutes. A random SAM cannot stay frozen, so here the
    whole model trains (backbone BatchNorm statistics excepted), where the release trains
    only the VRP encoder; with SAM's image encoder trained, embeddings cannot be cached."""
    config = base_config("toy", "resnet_tiny", "mask", "tiny")
    config.model.image_size = 128
    config.model.num_queries = 16
    config.init.random = True
    config.data.val_episodes = 200
    config.train.update({"epochs": 8, "steps_per_epoch": 50, "global_batch": 8, "lr": 2e-3,
                         "weight_decay": 1e-4, "trainable": ("encoder", "backbone", "sam")})
    config.cache.embeddings = False
    config.checkpoint.every_steps = 50
    config.log.update({"every_steps": 10, "val_every_epochs": 2})
    return config


def model_config(config: ml_collections.ConfigDict) -> VRPSamConfig:
    m = config.model
    return VRPSamConfig(m.backbone, m.sam_type, m.image_size, m.num_queries, m.num_heads,
                        m.get("compute_dtype", "float32"), m.get("attention", "auto"))


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`path.py[:arg]` -> its `get_config(arg)`, then `key=value` overrides applied."""
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such config file")
    module_spec = importlib.util.spec_from_file_location(f"_vrp_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        raise InputError(f"{file}: the config file failed to load ({e!r})") from e
    if not hasattr(module, "get_config"):
        raise InputError(f"{file}: defines no get_config()")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except (ValueError, TypeError) as e:
        raise InputError(f"{file}: get_config({arg!r}) failed: {e}") from e
    return apply_overrides(config, overrides)


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string: paths, names


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.removeprefix("--config.").removeprefix("config.")
        key = ALIASES.get(key, key)
        if not sep or not key:
            raise InputError(f"config override {item!r}: expected field=value")
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            if p not in node:
                raise InputError(f"config override {item!r}: no field {key!r}")
            node = node[p]
        if leaf not in node:
            raise InputError(f"config override {item!r}: no field {key!r}")
        value = _parse_value(text)
        if isinstance(node[leaf], str):
            value = text
        elif isinstance(node[leaf], tuple) and isinstance(value, str | list):
            value = tuple([value] if isinstance(value, str) else value)
        try:
            node[leaf] = value
        except TypeError as e:
            raise InputError(f"config override {item!r}: {e}") from e
    return config


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=1, sort_keys=True, default=list)


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d[part]
    return d


def resume_mismatches(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
    """The fields (RESUME_KEYS) where `config` differs from a saved run's config."""
    current = json.loads(to_json(config))
    out = []
    for key in RESUME_KEYS:
        try:
            a, b = _get(saved, key), _get(current, key)
        except KeyError:
            out.append(f"{key}: missing from the saved config")
            continue
        if a != b:
            out.append(f"{key}: checkpoint {a!r}, config {b!r}")
    return out
