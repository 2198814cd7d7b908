"""Experiment configs (ml_collections) as records, as big_vision keeps them: each file under
`configs/` is the complete, commented record of one experiment, every field the run reads
written out. Unlike big_vision's, which import helpers, a file here imports nothing but
`ml_collections`, so it reads whole on its own. `configs/` is installed with the package (as
`vrp_sam_jax.configs`), so a shipped config is named without a path:

    load_config("pascal:resnet50,box")        # a shipped config, with its argument
    load_config("configs/pascal.py:vgg16")    # a file (yours, or a copy of ours)
    load_config("toy", ["train.lr=1e-3"])     # then `field=value` overrides

A file defines `get_config(arg=None)`; the part after `:` is `arg`. The loaded config must hold
exactly the fields of `SCHEMA` (a missing or unknown field is an error naming the file; each
field's rule, whether it is a path, whether a resumed run must keep it, and its value in runs
written before it existed are in that one table), and `vrp_sam_config` builds the model as
`VRPSamConfig(**config.model)`.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib
import importlib.util
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import ml_collections

from vrp_sam_jax import names
from vrp_sam_jax.errors import ConfigError
from vrp_sam_jax.models import VRPSamConfig
from vrp_sam_jax.storage.files import parse_json
from vrp_sam_jax.storage.paths import absolute

SHIPPED_PACKAGE = "vrp_sam_jax.configs"
SHIPPED = ("pascal", "coco", "lvis", "toy")


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a config: what it may hold, and how runs treat it."""
    check: Callable[[object], bool] | None = None  # None: `VRPSamConfig` checks it (model.*)
    must_be: str = ""  # what `check` accepts, in words
    choices: tuple[str, ...] = ()  # or: the names it may hold
    path: bool = False  # a file or folder (or URL): stored absolute, so a run finds it again
    resume: bool = False  # must equal the checkpoint's when a run resumes: it shapes the
    # parameters, the data stream or the optimizer (not the compute dtype, paths, logging)
    added: object = None  # added after runs were first written: what every earlier run had


def _number(value, low: float, high: float = float("inf"), *, integer: bool = False,
            low_open: bool = False, high_open: bool = False) -> bool:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        return False
    return ((value > low) if low_open else (value >= low)) and \
        ((value < high) if high_open else (value <= high))


def _integer(low: int, note: str = "", **how) -> Field:
    return Field(lambda v: _number(v, low, integer=True), f"an integer >= {low}{note}", **how)


def _boolean(**how) -> Field:
    return Field(lambda v: isinstance(v, bool), "true or false", **how)


_PATH = Field(lambda v: isinstance(v, str), "a path (a string; empty: none)", path=True)

# Every field a config holds, section by section, in the configs' order: the one table of the
# schema (a config must hold exactly these).
SCHEMA = {
    "model.backbone": Field(resume=True),
    "model.sam_type": Field(resume=True),
    "model.image_size": Field(resume=True),
    "model.num_queries": Field(resume=True),
    "model.num_heads": Field(resume=True),
    "model.query_init": Field(resume=True, added="random"),
    "model.compute_dtype": Field(),
    "model.attention": Field(),
    "init.sam_checkpoint": _PATH,
    "init.backbone_checkpoint": _PATH,
    "init.random": _boolean(resume=True),
    "init.seed": _integer(0, resume=True),
    "data.benchmark": Field(choices=names.BENCHMARKS, resume=True),
    # 0-3; LVIS-92i has 10 (checked against data.benchmark in check_values)
    "data.fold": Field(lambda v: _number(v, 0, 9, integer=True), "a fold, 0 to 3 (lvis: 0 to 9)",
                       resume=True),
    "data.shots": _integer(1, resume=True),
    "data.condition": Field(choices=names.CONDITIONS, resume=True),
    "data.root": _PATH,
    "data.workers": _integer(0, " (0: automatic)"),
    "data.prefetch_batches": _integer(1),
    "data.val_protocol": Field(choices=names.PROTOCOLS),
    "data.val_episodes": _integer(1),
    "train.seed": _integer(0, resume=True),
    "train.epochs": _integer(1, resume=True),
    "train.steps_per_epoch": _integer(0, " (0: one pass over the episodes)", resume=True),
    "train.global_batch": _integer(1, resume=True),
    "train.lr": Field(lambda v: _number(v, 0, 1, low_open=True), "a learning rate in (0, 1]",
                      resume=True),
    "train.weight_decay": Field(lambda v: _number(v, 0, 1), "a number in [0, 1]", resume=True),
    "train.b1": Field(lambda v: _number(v, 0, 1, high_open=True), "a number in [0, 1)",
                      resume=True),
    "train.b2": Field(lambda v: _number(v, 0, 1, high_open=True), "a number in [0, 1)",
                      resume=True),
    "train.loss": Field(choices=names.LOSSES, resume=True, added="bce+dice"),
    "train.trainable": Field(lambda v: isinstance(v, tuple) and len(v) > 0
                             and all(isinstance(x, str) and x for x in v),
                             "a non-empty tuple of parameter paths", resume=True),
    "mesh.data": Field(lambda v: v == -1 or _number(v, 1, integer=True),
                       "-1 or an integer >= 1"),
    "mesh.model": _integer(1),
    "cache.embeddings": _boolean(),
    "cache.dir": _PATH,
    "cache.dtype": Field(choices=("float16", "float32")),
    "cache.shared": _boolean(added=True),
    "checkpoint.every_steps": _integer(1),
    "checkpoint.async_save": _boolean(),
    "log.every_steps": _integer(1),
    "log.val_every_epochs": _integer(1),
}
# section -> its fields, as a config file holds them
FIELDS = {section: tuple(name.split(".")[1] for name in SCHEMA if name.startswith(f"{section}."))
          for section in dict.fromkeys(name.split(".")[0] for name in SCHEMA)}
PATH_FIELDS = tuple(name for name, field in SCHEMA.items() if field.path)
RESUME_KEYS = tuple(name for name, field in SCHEMA.items() if field.resume)
# A stored `config.json` without one of these reads as the value every earlier run had.
ADDED_FIELDS = {name: field.added for name, field in SCHEMA.items() if field.added is not None}
# Short names the command line and notebooks accept for the fields people change most.
ALIASES = {"fold": "data.fold", "shots": "data.shots", "condition": "data.condition"}


def vrp_sam_config(config: ml_collections.ConfigDict) -> VRPSamConfig:
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
    """Every field of a config holds a value a run can use (names the library knows, numbers
    in range), checked before any work; returns the config. All problems are listed."""
    try:
        vrp_sam_config(config)
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from e
    problems = []
    for name, field in SCHEMA.items():
        value = _get(config, name)
        if field.choices and value not in field.choices:
            problems.append(f"{name}={value!r} is not one of {', '.join(field.choices)}")
        elif field.check is not None and not field.check(value):
            problems.append(f"{name}={value!r} must be {field.must_be}")
    fold, benchmark = _get(config, "data.fold"), _get(config, "data.benchmark")
    if isinstance(fold, int) and fold > 3 and benchmark != "lvis":
        problems.append(f"data.fold={fold} must be a fold, 0 to 3 ({benchmark} has 4; lvis "
                        "has 10)")
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
