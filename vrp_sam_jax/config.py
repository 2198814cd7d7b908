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
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import ml_collections

from vrp_sam_jax import names
from vrp_sam_jax.errors import ConfigError
from vrp_sam_jax.models import VRPSamConfig

SHIPPED_PACKAGE = "vrp_sam_jax.configs"
SHIPPED = ("pascal", "coco", "toy")
FIELDS = {
    "model": tuple(f.name for f in dataclasses.fields(VRPSamConfig)),
    "init": ("sam_checkpoint", "backbone_checkpoint", "random", "seed"),
    "data": ("benchmark", "fold", "shots", "condition", "root", "workers", "prefetch_batches",
             "val_protocol", "val_episodes"),
    "train": ("seed", "epochs", "steps_per_epoch", "global_batch", "lr", "weight_decay", "b1",
              "b2", "trainable"),
    "mesh": ("data", "model"),
    "cache": ("embeddings", "dir", "dtype"),
    "checkpoint": ("every_steps", "async_save"),
    "log": ("every_steps", "val_every_epochs"),
}
ALIASES = {"fold": "data.fold", "shots": "data.shots", "condition": "data.condition"}
# Fields that must match between a run and the checkpoint it resumes from.
RESUME_KEYS = ("model.backbone", "model.sam_type", "model.image_size", "model.num_queries",
               "model.num_heads", "data.benchmark", "data.fold", "data.shots", "data.condition",
               "train.seed", "train.global_batch", "train.trainable", "train.epochs",
               "train.steps_per_epoch")


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


def check_values(config: ml_collections.ConfigDict, label: str) -> ml_collections.ConfigDict:
    """The names a config holds are ones the library knows (model, benchmark, condition,
    protocol); returns the config."""
    model_config(config)
    for field, allowed in (("data.benchmark", names.BENCHMARKS),
                           ("data.condition", names.CONDITIONS),
                           ("data.val_protocol", names.PROTOCOLS)):
        if _get(config, field) not in allowed:
            raise ConfigError(f"{label}: {field}={_get(config, field)!r} is not one of "
                              f"{', '.join(allowed)}")
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
            if p not in node:
                raise ConfigError(f"config override {item!r}: no field {key!r}")
            node = node[p]
        if leaf not in node:
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


PATH_FIELDS = ("init.sam_checkpoint", "init.backbone_checkpoint", "data.root", "cache.dir")


def absolute_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy whose paths (`PATH_FIELDS`, where set) are absolute, so a run's stored config
    names the same files from any working directory."""
    out = copy.deepcopy(config)
    for field in PATH_FIELDS:
        section, leaf = field.split(".")
        if out[section][leaf]:
            out[section][leaf] = str(Path(out[section][leaf]).expanduser().absolute())
    return out


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=1, sort_keys=True, default=list)


def from_json(text: str, label: str) -> ml_collections.ConfigDict:
    """A config written by `to_json` (a run's `config.json`), checked like a file."""
    try:
        data = json.loads(text)
        data["train"]["trainable"] = tuple(data["train"]["trainable"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
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
