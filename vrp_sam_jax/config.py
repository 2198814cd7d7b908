"""Experiment configs (ml_collections), in big_vision's manner: each file under `configs/` is
the complete, commented record of one experiment, every field the run reads written out, and
imports nothing but `ml_collections`. `configs/` is installed with the package (as
`vrp_sam_jax.configs`), so a shipped config is named without a path:

    load_config("pascal:resnet50,box")        # a shipped config, with its argument
    load_config("configs/pascal.py:vgg16")    # a file (yours, or a copy of ours)
    load_config("toy", ["train.lr=1e-3"])     # then `field=value` overrides

A file defines `get_config(arg=None)`; the part after `:` is `arg`. The loaded config must hold
exactly the fields of `FIELDS` (a missing or unknown field is an error naming the file), and
`model_config` builds the model as `VRPSamConfig(**config.model)`.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib
import importlib.util
import json
import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import ml_collections

from vrp_sam_jax import names
from vrp_sam_jax.errors import ConfigError
from vrp_sam_jax.files import parse_json
from vrp_sam_jax.models import VRPSamConfig
from vrp_sam_jax.paths import absolute

SHIPPED_PACKAGE = "vrp_sam_jax.configs"
SHIPPED = ("pascal", "coco", "toy")
FIELDS = {
    "model": tuple(f.name for f in dataclasses.fields(VRPSamConfig)),
    "init": ("sam_checkpoint", "backbone_checkpoint", "random", "seed"),
    "data": ("benchmark", "fold", "shots", "condition", "root", "workers", "prefetch_batches",
             "val_protocol", "val_episodes"),
    "train": ("seed", "epochs", "steps_per_epoch", "global_batch", "lr", "weight_decay", "b1",
              "b2", "loss", "trainable"),
    "mesh": ("data", "model"),
    "cache": ("embeddings", "dir", "dtype", "shared"),
    "checkpoint": ("every_steps", "async_save"),
    "log": ("every_steps", "val_every_epochs"),
}
PATH_FIELDS = ("init.sam_checkpoint", "init.backbone_checkpoint", "data.root", "cache.dir")
ALIASES = {"fold": "data.fold", "shots": "data.shots", "condition": "data.condition"}
# Fields added after runs were first written, with the value every earlier run had: a stored
# `config.json` without them reads as that value.
ADDED_FIELDS = {"model.query_init": "random", "train.loss": "bce+dice", "cache.shared": True}
# Fields that must match between a run and the checkpoint it resumes from: everything that
# shapes the parameters, the data stream or the optimizer (not the compute dtype, the
# attention path, the paths, the logging).
RESUME_KEYS = ("model.backbone", "model.sam_type", "model.image_size", "model.num_queries",
               "model.num_heads", "model.query_init", "init.random", "init.seed",
               "data.benchmark", "data.fold", "data.shots", "data.condition", "train.seed",
               "train.global_batch",
               "train.trainable", "train.epochs", "train.steps_per_epoch", "train.lr",
               "train.weight_decay", "train.b1", "train.b2", "train.loss")


def model_config(config: ml_collections.ConfigDict) -> VRPSamConfig:
    """The model of a config: `VRPSamConfig(**config.model)`."""
    try:
        return VRPSamConfig(**config.model.to_dict())
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.model: {e}") from e


def _module(spec: str) -> tuple[ModuleType, str]:
    """The module a config spec names (a file, or a shipped config), and its label."""
    file = Path(spec)
    if file.is_file():
        module_spec = importlib.util.spec_from_file_location(f"_vrp_config_{file.stem}", file)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            raise ConfigError(f"{file}: the config file failed to load ({e!r})") from e
        return module, str(file)
    if spec in SHIPPED:
        return importlib.import_module(f"{SHIPPED_PACKAGE}.{spec}"), f"configs/{spec}.py"
    raise ConfigError(f"{spec}: no such config file, nor a shipped config "
                      f"({', '.join(SHIPPED)})")


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`path.py[:arg]` or `name[:arg]` -> its `get_config(arg)`, checked to hold exactly
    `FIELDS`, then `field=value` overrides applied."""
    path, _, arg = spec.partition(":")
    module, label = _module(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{label}: defines no get_config()")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{label}: get_config({arg!r}) failed: {e}") from e
    check_fields(config, label)
    return check_values(apply_overrides(config, overrides), label)


def _number(value, low: float, high: float = float("inf"), *, integer: bool = False,
            low_open: bool = False, high_open: bool = False) -> bool:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        return False
    return ((value > low) if low_open else (value >= low)) and \
        ((value < high) if high_open else (value <= high))


# field -> (check, what the field must be)
_RULES = {
    "init.seed": (lambda v: _number(v, 0, integer=True), "an integer >= 0"),
    "init.random": (lambda v: isinstance(v, bool), "true or false"),
    "data.fold": (lambda v: _number(v, 0, 3, integer=True), "a fold, 0 to 3"),
    "data.shots": (lambda v: _number(v, 1, integer=True), "an integer >= 1"),
    "data.workers": (lambda v: _number(v, 0, integer=True), "an integer >= 0 (0: automatic)"),
    "data.prefetch_batches": (lambda v: _number(v, 1, integer=True), "an integer >= 1"),
    "data.val_episodes": (lambda v: _number(v, 1, integer=True), "an integer >= 1"),
    "train.seed": (lambda v: _number(v, 0, integer=True), "an integer >= 0"),
    "train.epochs": (lambda v: _number(v, 1, integer=True), "an integer >= 1"),
    "train.steps_per_epoch": (lambda v: _number(v, 0, integer=True),
                              "an integer >= 0 (0: one pass over the episodes)"),
    "train.global_batch": (lambda v: _number(v, 1, integer=True), "an integer >= 1"),
    "train.lr": (lambda v: _number(v, 0, 1, low_open=True), "a learning rate in (0, 1]"),
    "train.weight_decay": (lambda v: _number(v, 0, 1), "a number in [0, 1]"),
    "train.b1": (lambda v: _number(v, 0, 1, high_open=True), "a number in [0, 1)"),
    "train.b2": (lambda v: _number(v, 0, 1, high_open=True), "a number in [0, 1)"),
    "train.trainable": (lambda v: isinstance(v, tuple) and len(v) > 0
                        and all(isinstance(x, str) and x for x in v),
                        "a non-empty tuple of parameter paths"),
    "mesh.data": (lambda v: v == -1 or _number(v, 1, integer=True), "-1 or an integer >= 1"),
    "mesh.model": (lambda v: _number(v, 1, integer=True), "an integer >= 1"),
    "cache.embeddings": (lambda v: isinstance(v, bool), "true or false"),
    "cache.shared": (lambda v: isinstance(v, bool), "true or false"),
    "cache.dtype": (lambda v: v in ("float16", "float32"), "float16 or float32"),
    "checkpoint.every_steps": (lambda v: _number(v, 1, integer=True), "an integer >= 1"),
    "checkpoint.async_save": (lambda v: isinstance(v, bool), "true or false"),
    "log.every_steps": (lambda v: _number(v, 1, integer=True), "an integer >= 1"),
    "log.val_every_epochs": (lambda v: _number(v, 1, integer=True), "an integer >= 1"),
}
_RULES.update({field: (lambda v: isinstance(v, str), "a path (a string; empty: none)")
               for field in PATH_FIELDS})


def check_values(config: ml_collections.ConfigDict, label: str) -> ml_collections.ConfigDict:
    """Every field of a config holds a value a run can use (names the library knows, numbers
    in range), checked before any work; returns the config. All problems are listed."""
    try:
        model_config(config)
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from e
    problems = []
    for field, allowed in (("train.loss", names.LOSSES),
                           ("data.benchmark", names.BENCHMARKS),
                           ("data.condition", names.CONDITIONS),
                           ("data.val_protocol", names.PROTOCOLS)):
        if _get(config, field) not in allowed:
            problems.append(f"{field}={_get(config, field)!r} is not one of "
                            f"{', '.join(allowed)}")
    for field, (check, what) in _RULES.items():
        if not check(_get(config, field)):
            problems.append(f"{field}={_get(config, field)!r} must be {what}")
    if problems:
        raise ConfigError(f"{label}: " + "; ".join(problems))
    return config


def check_fields(config: ml_collections.ConfigDict, label: str) -> None:
    """A config holds exactly the sections and fields of `FIELDS`."""
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{label}: get_config() must return an ml_collections.ConfigDict")
    problems = []
    for section in sorted(set(config) - set(FIELDS)):
        problems.append(f"unknown section {section!r}")
    for section, fields in FIELDS.items():
        present = set(config[section]) if section in config else set()
        problems += [f"missing {section}.{f}" for f in fields if f not in present]
        problems += [f"unknown field {section}.{f}" for f in sorted(present - set(fields))]
    if problems:
        raise ConfigError(f"{label}: not a complete VRP-SAM config: " + "; ".join(problems))


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string: paths, names


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """`field=value` strings (`train.lr=2e-4`, `data.fold=2`), each checked against the
    field's type."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.removeprefix("--config.").removeprefix("config.")
        key = ALIASES.get(key, key)
        if not sep or not key:
            raise ConfigError(f"config override {item!r}: expected field=value")
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            if not isinstance(node, ml_collections.ConfigDict) or p not in node:
                raise ConfigError(f"config override {item!r}: no field {key!r}")
            node = node[p]
        if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
            raise ConfigError(f"config override {item!r}: no field {key!r}")
        value = _parse_value(text)
        if isinstance(node[leaf], str):
            value = text
        elif isinstance(node[leaf], tuple) and isinstance(value, str | list):
            value = tuple([value] if isinstance(value, str) else value)
        try:
            node[leaf] = value
        except TypeError as e:
            raise ConfigError(f"config override {item!r}: {e}") from e
    return config


def absolute_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy whose paths (`PATH_FIELDS`, where set) are absolute, so a run's stored config
    names the same files from any working directory (a URL stays as it is)."""
    out = copy.deepcopy(config)
    for field in PATH_FIELDS:
        section, leaf = field.split(".")
        if out[section][leaf]:
            out[section][leaf] = str(absolute(out[section][leaf]))
    return out


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=1, sort_keys=True, default=list)


def from_json(text: str | bytes, label: str) -> ml_collections.ConfigDict:
    """A config written by `to_json` (a run's `config.json`), checked like a file."""
    data = parse_json(text, label, "run config", ConfigError)
    try:
        data["train"]["trainable"] = tuple(data["train"]["trainable"])
        for field, value in ADDED_FIELDS.items():
            section, leaf = field.split(".")
            data[section].setdefault(leaf, value)
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{label}: not a readable run config ({e})") from e
    config = ml_collections.ConfigDict(data)
    check_fields(config, label)
    return config


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
