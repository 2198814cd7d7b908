"""`vrp-sam plan`: a run's steps compiled ahead of time for a TPU slice this machine does not
have, to know before renting it whether the config fits a chip and what a step costs.

JAX describes a slice's chips without the hardware (`jax.experimental.topologies`, given
`libtpu`: the `tpu` extra). Each step the run executes is jitted as training and evaluation jit
it, lowered on abstract arrays with the run's shapes (image size, shots, global batch, cache on
or off, compute dtype) laid out on the config's mesh over those chips, and compiled by the TPU
compiler without running. The compiler's own analyses give the bytes one chip holds and the
FLOPs it does; the compiled HLO lists the collectives between chips.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vrp_sam_jax import sharding
from vrp_sam_jax.config import check_values, model_config
from vrp_sam_jax.data import protocols
from vrp_sam_jax.data.pipeline import EpisodeOptions, load_episode, stack
from vrp_sam_jax.data.sources import ToySource
from vrp_sam_jax.errors import ConfigError, InputError
from vrp_sam_jax.evaluation.step import jit_eval_step
from vrp_sam_jax.inference import encode_reference, predict_logits
from vrp_sam_jax.models import VRPSam, VRPSamConfig
from vrp_sam_jax.models.vrp_sam import abstract_params
from vrp_sam_jax.preprocess import normalize_image
from vrp_sam_jax.training import partition
from vrp_sam_jax.training import step as step_lib
from vrp_sam_jax.training.embedding_cache import DTYPES, jit_embed
from vrp_sam_jax.training.trainer import trains_sam_image_encoder

TOPOLOGY_EXAMPLES = ("v5e:2x2", "v5e:4x4", "v4:2x2x2", "v5p:2x2x1", "v6e:2x2")
STEP_NAMES = ("train", "train_cached", "eval", "cache", "predict")
PREDICT_BATCH = 8  # `vrp-sam predict`'s and the app's default --batch-size


@dataclasses.dataclass(frozen=True)
class Chip:
    hbm_bytes: int
    peak_flops: float  # dense bf16 FLOP/s, as published by Google Cloud
    peak_source: str


GiB = 1024**3
# Keyed by the device kind the TPU client reports.
CHIPS = {
    "TPU v4": Chip(32 * GiB, 275e12, "TPU v4: 275 TFLOP/s bf16"),
    "TPU v5 lite": Chip(16 * GiB, 197e12, "TPU v5e: 197 TFLOP/s bf16"),
    "TPU v5": Chip(95 * GiB, 459e12, "TPU v5p: 459 TFLOP/s bf16"),
    "TPU v6 lite": Chip(32 * GiB, 918e12, "TPU v6e: 918 TFLOP/s bf16"),
}
# What a chip may hold of its HBM: the runtime keeps some for itself.
FIT_MARGIN = 0.9
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_ITEM_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4,
               "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8}


def topology_devices(name: str) -> list:
    """The chips of the TPU slice `name` (JAX's topology names), without the hardware."""
    if importlib.util.find_spec("libtpu") is None:
        raise InputError('vrp-sam plan needs libtpu to compile for a TPU: pip install -e ".[tpu]"')
    from jax.experimental import topologies

    # Not on a TPU VM: libtpu must not ask the cloud's metadata server where it runs.
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    # Compiling uses no chip, so two compile-only clients (two plans, a plan beside a test
    # run) may load libtpu at once; its lockfile would refuse the second.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    with tempfile.TemporaryFile() as said, _stderr_to(said):  # libtpu's warnings, from C++
        try:
            return list(topologies.get_topology_desc(topology_name=name,
                                                     platform="tpu").devices)
        except Exception as error:  # the TPU client's own message is a multi-line trace
            raise InputError(f"unknown TPU topology {name!r} (examples: "
                             f"{', '.join(TOPOLOGY_EXAMPLES)}): "
                             f"{str(error).strip().splitlines()[0]}") from None


@contextlib.contextmanager
def _stderr_to(file) -> Iterator[None]:
    """File descriptor 2 (what C++ libraries print) into `file` for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def not_cached() -> Iterator[None]:
    """Compile without writing to JAX's persistent compilation cache (when one is on): a TPU
    program compiled with no TPU cannot be loaded from it again (the compile-only client has
    no device to load it on), and reading it back only warns."""
    before = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float("inf"))
    try:
        yield
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before)


def chip_count(devices: list) -> int:
    """Chips of a slice: a TPU v4 or v5p chip has two cores, listed as two devices."""
    return len({tuple(d.coords) for d in devices}) if hasattr(devices[0], "coords") else len(
        devices)


def example_batch(config: ml_collections.ConfigDict, model: VRPSamConfig, rows: int) -> dict:
    """The loader's batch for this config, as shapes: one toy episode at the config's image
    size, shots and condition (every benchmark's episodes have the same arrays), `rows` of
    it."""
    episode = protocols.training_episodes("toy", 0, config.data.shots, 0, 0)[0]
    options = EpisodeOptions(model.image_size, config.data.condition, training=True)
    one = stack([load_episode(ToySource(), episode, 0, options)])
    return {k: jax.ShapeDtypeStruct((rows, *v.shape[1:]), v.dtype) for k, v in one.items()}


def _with(tree, shardings):
    """Abstract arrays of `tree` placed by `shardings` (one, or a matching tree)."""
    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shardings),
                            tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
                        shardings)


def collectives(hlo: str) -> dict[str, dict[str, int]]:
    """Cross-chip operations in compiled HLO text: kind -> {count, bytes} (result bytes)."""
    out: dict[str, dict[str, int]] = {}
    for line in hlo.splitlines():
        # `%name = SHAPE KIND(operands), ...`; a tuple SHAPE may hold `/*index=5*/` comments
        found = re.match(r"\s*%?\S+ = (.*?) (" + "|".join(COLLECTIVES) + r")(-start)?\(", line)
        if not found:
            continue
        kind = found.group(2)
        size = sum(_ITEM_BYTES.get(dtype, 4) * int(np.prod([int(d) for d in dims.split(",")
                                                            if d] or [1]))
                   for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", found.group(1)))
        entry = out.setdefault(kind, {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += size
    return out


def analyse(compiled, hbm_bytes: float | None, devices_per_chip: int) -> dict:
    """What one device holds (`peak_bytes`, against its share `hbm_bytes` of its chip's HBM)
    and what one chip does, for a compiled program."""
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    peak = (memory.argument_size_in_bytes + memory.output_size_in_bytes
            - memory.alias_size_in_bytes + memory.temp_size_in_bytes
            + memory.generated_code_size_in_bytes)
    return {"argument_bytes": int(memory.argument_size_in_bytes),
            "output_bytes": int(memory.output_size_in_bytes),
            "alias_bytes": int(memory.alias_size_in_bytes),
            "temp_bytes": int(memory.temp_size_in_bytes),
            "code_bytes": int(memory.generated_code_size_in_bytes),
            "peak_bytes": int(peak),
            "fits": None if hbm_bytes is None else bool(peak <= FIT_MARGIN * hbm_bytes),
            "flops_per_chip": devices_per_chip * float(cost.get("flops", 0.0)),
            "bytes_accessed": devices_per_chip * float(cost.get("bytes accessed", 0.0)),
            "collectives": collectives(compiled.as_text())}


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def measure(compile_step: Callable, hbm_bytes: float | None, devices_per_chip: int) -> dict:
    """`analyse` of the compiled step, with its compile time. The TPU compiler refuses a
    program whose buffers exceed the chip's HBM: that step is reported `fits: false` with
    the bytes the compiler said it needed, and no FLOPs."""
    start = time.perf_counter()
    try:
        with not_cached():
            compiled = compile_step()
        result = analyse(compiled, hbm_bytes, devices_per_chip)
    except jax.errors.JaxRuntimeError as error:
        message = str(error)
        needed = re.search(r"required for ([^(]*)\(([\d.]+)([KMGT]?)\)", message)
        if "RESOURCE_EXHAUSTED" not in message or needed is None:
            raise
        size = int(float(needed.group(2)) * _UNITS[needed.group(3)])
        result = {"argument_bytes": None, "output_bytes": None, "alias_bytes": None,
                  "temp_bytes": size if "temporar" in needed.group(1) else None,
                  "code_bytes": None, "peak_bytes": size, "fits": False,
                  "flops_per_chip": None, "bytes_accessed": None, "collectives": {},
                  "refused": message.strip().splitlines()[0]}
    return {**result, "compile_seconds": round(time.perf_counter() - start, 1)}


def steps(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> dict[str, Callable]:
    """name -> a function compiling that step of the run for `mesh` (returns the compiled
    program): `train` (SAM's image encoder inside), `train_cached` (its embeddings from the
    cache; only where the encoder is frozen), `eval`, `cache` (the embedding pre-pass) and
    `predict` (`vrp-sam predict`'s program: PREDICT_BATCH targets with the config's shots of
    encoded references, on one chip, as `inference.VRPSamPredictor` runs it)."""
    model = model_config(config)
    sharding.check_batch(config.train.global_batch, mesh)
    rows = config.train.global_batch
    params = abstract_params(model)
    trainable, frozen = partition.split(params, tuple(config.train.trainable))
    optimizer = step_lib.make_optimizer(config.train.lr, 1, config.train.weight_decay)
    replicated, rows_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    frozen_sharding = sharding.param_shardings(mesh, frozen)
    state = _with(jax.eval_shape(lambda t: step_lib.init_state(t, optimizer), trainable),
                  replicated)
    batch = example_batch(config, model, rows)
    embedding = jax.eval_shape(
        lambda p, x: VRPSam(model).apply({"params": p}, normalize_image(x),
                                         method=VRPSam.embed_targets),
        params, batch["query_image"])
    cached = {**batch, "embeddings": jax.ShapeDtypeStruct(
        embedding.shape, DTYPES[config.cache.dtype])}
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated)

    def train(with_batch: dict):
        step = step_lib.jit_train_step(model, optimizer, replicated, frozen_sharding,
                                       rows_sharding, replicated, loss=config.train.loss)
        return step.lower(state, _with(frozen, frozen_sharding),
                          _with(with_batch, rows_sharding), key).compile()

    out = {"train": lambda: train(batch)}
    if not trains_sam_image_encoder(tuple(config.train.trainable)):
        out["train_cached"] = lambda: train(cached)
    out["eval"] = lambda: jit_eval_step(model, mesh).lower(
        _with(params, sharding.param_shardings(mesh, params)),
        _with(batch, rows_sharding)).compile()
    out["cache"] = lambda: jit_embed(model, mesh, config.cache.dtype).lower(
        _with(params["sam"], replicated),
        jax.ShapeDtypeStruct(batch["query_image"].shape, jnp.uint8, sharding=rows_sharding)
    ).compile()
    one = jax.sharding.SingleDeviceSharding(mesh.devices.flat[0])
    size = model.image_size
    references = (jax.ShapeDtypeStruct((1, config.data.shots, size, size, 3), jnp.float32),
                  jax.ShapeDtypeStruct((1, config.data.shots, size, size), jnp.float32))
    reference = jax.eval_shape(lambda p, x, m: encode_reference(model, p, x, m), params,
                               *references)
    out["predict"] = lambda: predict_logits.lower(
        model, _with(params, one), _with(reference, one),
        jax.ShapeDtypeStruct((PREDICT_BATCH, size, size, 3), jnp.float32, sharding=one)
    ).compile()
    return out


def plan(config: ml_collections.ConfigDict, topology: str,
         progress: Callable[[str], None] = lambda _: None,
         only: tuple[str, ...] = STEP_NAMES) -> dict:
    """The run's steps compiled for `topology`: per step what one chip holds and does, and a
    lower bound of the run's time from FLOPs at the chip's published peak. `only`: the steps
    to compile (each takes minutes for ViT-H); a step the run does not execute is skipped."""
    config = check_values(config, "config")
    unknown = sorted(set(only) - set(STEP_NAMES))
    if unknown:
        raise InputError(f"unknown step {unknown[0]!r}: the steps are {', '.join(STEP_NAMES)}")
    devices = topology_devices(topology)
    kind = devices[0].device_kind
    chip = CHIPS.get(kind)
    try:
        mesh = sharding.make_mesh(config.mesh.data, config.mesh.model, devices=devices)
        compilers = steps(config, mesh)
    except ConfigError as error:
        raise InputError(f"{topology}: {error}") from None
    chips = chip_count(devices)
    per_chip = len(devices) // chips
    report = {}
    for name, compile_step in compilers.items():
        if name not in only:
            continue
        progress(f"compiling {name} for {topology} ...")
        # `predict` runs on one device: its chip does that device's work alone
        report[name] = measure(compile_step, None if chip is None else chip.hbm_bytes / per_chip,
                               1 if name == "predict" else per_chip)
    result = {"topology": topology, "chips": chips, "devices": len(devices),
              "device_kind": kind,
              "hbm_bytes_per_chip": None if chip is None else chip.hbm_bytes,
              "fit_margin": FIT_MARGIN, "mesh": {"data": mesh.shape["data"],
                                                 "model": mesh.shape["model"]},
              "global_batch": config.train.global_batch, "steps": report,
              "estimate": estimate(config, report, chip)}
    return result


def estimate(config: ml_collections.ConfigDict, report: dict, chip: Chip | None) -> dict:
    """Training steps of the run and their time at the chip's peak FLOP/s (a lower bound)."""
    d = config.data
    try:
        episodes = len(protocols.training_episodes(d.benchmark, d.fold, d.shots, 0,
                                                   config.train.seed))
    except Exception:  # noqa: BLE001 - a benchmark whose split lists are not shipped
        episodes = None
    per_epoch = (config.train.steps_per_epoch
                 or (None if episodes is None else episodes // config.train.global_batch))
    total = None if per_epoch is None else per_epoch * config.train.epochs
    step = report.get("train_cached" if config.cache.embeddings and "train_cached" in report
                      else "train", {})
    flops = step.get("flops_per_chip")
    seconds = (None if chip is None or total is None or flops is None
               else total * flops / chip.peak_flops)
    predict_flops = report.get("predict", {}).get("flops_per_chip")
    targets_per_second = (None if chip is None or not predict_flops
                          else PREDICT_BATCH * chip.peak_flops / predict_flops)
    return {"train_steps": total, "train_seconds_at_peak": seconds,
            "predict_targets_per_second_at_peak": targets_per_second,
            "peak": None if chip is None else chip.peak_source}


def table(result: dict) -> str:
    """The report as a table for people."""
    mesh = result["mesh"]
    hbm = result["hbm_bytes_per_chip"]
    lines = [f"{result['topology']}: {result['chips']} x {result['device_kind']} "
             f"({result['devices']} devices)"
             + (f", {hbm / GiB:.0f} GiB HBM each" if hbm else "")
             + f"; mesh {mesh['data']} data x {mesh['model']} model; global batch "
               f"{result['global_batch']}",
             f"{'step':<13}{'peak GiB':>9}{'temp GiB':>9}{'fits':>6}{'TFLOP':>9}"
             f"  {'collectives':<34}{'compile s':>9}"]
    for name, s in result["steps"].items():
        kinds = ", ".join(f"{v['count']} {k}" for k, v in sorted(s["collectives"].items()))
        fits = "?" if s["fits"] is None else ("yes" if s["fits"] else "NO")
        temp, flops = s["temp_bytes"], s["flops_per_chip"]
        lines.append(f"{name:<13}{s['peak_bytes'] / GiB:>9.2f}"
                     f"{'?' if temp is None else f'{temp / GiB:.2f}':>9}{fits:>6}"
                     f"{'?' if flops is None else f'{flops / 1e12:.3f}':>9}  {kinds or '-':<34}"
                     f"{s['compile_seconds']:>9.1f}")
    e = result["estimate"]
    if e["train_seconds_at_peak"] is not None:
        lines.append(f"training: {e['train_steps']} steps, at least "
                     f"{e['train_seconds_at_peak'] / 3600:.2f} h at peak ({e['peak']}); "
                     f"peak = what one chip holds, fits = peak <= {result['fit_margin']:.0%} "
                     "of HBM")
    if e["predict_targets_per_second_at_peak"] is not None:
        lines.append(f"predict: at most {e['predict_targets_per_second_at_peak']:.0f} targets/s "
                     f"on one chip at peak, {PREDICT_BATCH} per call")
    return "\n".join(lines)
