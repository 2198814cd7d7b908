"""`vrp-sam plan`: a run's steps compiled ahead of time for a TPU slice or GPUs this machine
does not have, to know before renting them whether the config fits a chip and what a step
costs.

JAX describes a slice's chips without the hardware (`jax.experimental.topologies`, given
`libtpu`: the `tpu` extra), and GPUs from a description of the card (XLA's `GpuTargetConfig`,
given jaxlib's CUDA plugin: the `gpu-plan` extra; no GPU or driver needed). Each step the run
executes is jitted as training and evaluation jit it, lowered on abstract arrays with the run's
shapes (image size, shots, global batch, cache on or off, compute dtype) laid out on the
config's mesh over those chips, and compiled without running. The compiler's own analyses give
the bytes one chip holds and, for a TPU, the FLOPs it does; the compiled HLO lists the
collectives between chips. XLA's GPU compiler reports no FLOPs: for GPUs they are XLA's count
of the same step's program before optimisation (on this machine's CPU), split over the data
axis.
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

from vrp_sam_jax.config import check_values, vrp_sam_config
from vrp_sam_jax.data import protocols
from vrp_sam_jax.data.pipeline import EpisodeOptions, load_episode, stack
from vrp_sam_jax.data.sources import ToySource
from vrp_sam_jax.errors import ConfigError, InputError
from vrp_sam_jax.evaluation.step import jit_eval_step
from vrp_sam_jax.inference import encode_reference, predict_logits
from vrp_sam_jax.models import VRPSam, VRPSamConfig
from vrp_sam_jax.models.vrp_sam import abstract_params
from vrp_sam_jax.runtime import sharding
from vrp_sam_jax.training import partition
from vrp_sam_jax.training import step as step_lib
from vrp_sam_jax.training.embedding_cache import DTYPES, embedding_program, images_per_call
from vrp_sam_jax.training.trainer import trains_sam_image_encoder
from vrp_sam_jax.transforms.preprocess import normalize_image

TOPOLOGY_EXAMPLES = ("v5e:1x1", "v5e:2x2", "v5e:4x4", "v4:2x2x2", "v5p:2x2x1", "v6e:2x2",
                     "h100:8", "a100:8", "h200:8")
STEP_NAMES = ("train", "train_cached", "eval", "cache", "predict")
PREDICT_BATCH = 8  # `vrp-sam predict`'s and the app's default --batch-size


@dataclasses.dataclass(frozen=True)
class Chip:
    hbm_bytes: int
    peak_flops: float  # dense bf16 FLOP/s, as published by Google Cloud
    peak_source: str


GiB = 1024**3
# Keyed by the device kind the compile-only client reports. A GPU's memory is what CUDA reports
# for the card (XLA's own target descriptions, measured on the cards, say the same); peaks are
# dense (not sparse) bf16.
CHIPS = {
    "TPU v4": Chip(32 * GiB, 275e12, "TPU v4: 275 TFLOP/s bf16"),
    "TPU v5 lite": Chip(16 * GiB, 197e12, "TPU v5e: 197 TFLOP/s bf16"),
    "TPU v5": Chip(95 * GiB, 459e12, "TPU v5p: 459 TFLOP/s bf16"),
    "TPU v6 lite": Chip(32 * GiB, 918e12, "TPU v6e: 918 TFLOP/s bf16"),
    "NVIDIA H100 80GB HBM3": Chip(84_942_979_072, 989e12,
                                  "H100 SXM: 989 TFLOP/s dense bf16"),
    "NVIDIA A100-SXM4-80GB": Chip(85_100_068_864, 312e12,
                                  "A100 SXM: 312 TFLOP/s dense bf16"),
    "NVIDIA H200": Chip(151_397_597_184, 989e12, "H200 SXM: 989 TFLOP/s dense bf16"),
}


@dataclasses.dataclass(frozen=True)
class GpuCard:
    """What XLA's GPU compiler needs to know of a card it does not see (the fields of its
    `GpuTargetConfig.gpu_device_info` it plans with), from NVIDIA's published specifications
    and CUDA's device properties for that card."""
    name: str  # as CUDA names the device: the device kind
    compute_capability: tuple[int, int]
    cores: int  # streaming multiprocessors
    fpus_per_core: int
    clock_ghz: float
    memory_bytes: int
    memory_bandwidth: int  # bytes/s
    l2_cache_bytes: int
    shared_memory_per_core: int
    shared_memory_per_block_optin: int

    def target_config(self) -> str:
        """The card as a `GpuTargetConfig` text proto (cuDNN 9, which jaxlib 0.10.2 needs)."""
        major, minor = self.compute_capability
        return f"""gpu_device_info {{
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: {self.shared_memory_per_core} threads_per_core_limit: 2048
  core_count: {self.cores} fpus_per_core: {self.fpus_per_core}
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: {self.memory_bandwidth} l2_cache_size: {self.l2_cache_bytes}
  clock_rate_ghz: {self.clock_ghz} device_memory_size: {self.memory_bytes}
  shared_memory_per_block_optin: {self.shared_memory_per_block_optin}
  cuda_compute_capability {{ major: {major} minor: {minor} }}
  registers_per_core_limit: 65536 registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 7 }}
device_description_str: "{self.name}"
"""


# `plan --topology h100:8`: the card's name before the colon, the number of GPUs after it
GPUS = {
    "h100": GpuCard("NVIDIA H100 80GB HBM3", (9, 0), 132, 128, 1.98, 84_942_979_072,
                    3_352_320_000_000, 50 * 2**20, 228 * 2**10, 227 * 2**10),
    "a100": GpuCard("NVIDIA A100-SXM4-80GB", (8, 0), 108, 64, 1.41, 85_100_068_864,
                    2_039_040_000_000, 40 * 2**20, 164 * 2**10, 163 * 2**10),
    "h200": GpuCard("NVIDIA H200", (9, 0), 132, 128, 1.98, 151_397_597_184,
                    4_800_000_000_000, 50 * 2**20, 228 * 2**10, 227 * 2**10),
}
GPUS_PER_HOST = 8
# What a chip may hold of its HBM: the runtime keeps some for itself.
FIT_MARGIN = 0.9
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_ITEM_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4,
               "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8}


def topology_devices(name: str) -> list:
    """The chips of the TPU slice `name` (JAX's topology names), or the GPUs `card:count`
    (`h100:8`; over 8, hosts of 8), without the hardware."""
    card, _, count = name.partition(":")
    if card in GPUS:
        return _gpu_devices(name, GPUS[card], count)
    if importlib.util.find_spec("libtpu") is None:
        raise InputError('vrp-sam plan needs libtpu to compile for a TPU: pip install -e ".[tpu]"')
    from jax.experimental import topologies

    # Not on a TPU VM: libtpu must not ask the cloud's metadata server where it runs.
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    # Compiling uses no chip, so two compile-only clients (two plans, a plan beside a test
    # run) may load libtpu at once; its lockfile would refuse the second.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    # A slice smaller than one host (Colab's v5e-1 is `v5e:1x1`) is described only with its
    # own bounds as the host's.
    bounds = re.fullmatch(r"v\w+:(\d+)x(\d+)(?:x(\d+))?", name)
    small = {} if bounds is None else {"chips_per_host_bounds": tuple(
        int(b or 1) for b in bounds.groups())}
    with tempfile.TemporaryFile() as said, _stderr_to(said):  # libtpu's warnings, from C++
        try:
            try:
                found = topologies.get_topology_desc(topology_name=name, platform="tpu")
            except Exception as error:
                if "chips_per_host" not in str(error) or not small:
                    raise
                found = topologies.get_topology_desc(topology_name=name, platform="tpu",
                                                     **small)
        except Exception as error:  # the TPU client's own message is a multi-line trace
            raise InputError(f"unknown TPU topology {name!r} (examples: "
                             f"{', '.join(TOPOLOGY_EXAMPLES)}): "
                             f"{str(error).strip().splitlines()[0]}") from None
    # TPU v4 and v5p chips have two TensorCores, which the description lists as two devices;
    # JAX runs them as one device per chip ("megacore", the only way it makes a mesh there)
    return [d for d in found.devices if getattr(d, "core_on_chip", 0) == 0]


def has_cuda_compiler() -> bool:
    """Whether jaxlib's CUDA plugin (the `gpu-plan` extra) is installed."""
    try:
        return importlib.util.find_spec("jax_plugins.xla_cuda12") is not None
    except ModuleNotFoundError:  # not even the `jax_plugins` namespace
        return False


def _gpu_devices(name: str, card: GpuCard, count: str) -> list:
    if not count.isdigit() or int(count) < 1 or (
            int(count) > GPUS_PER_HOST and int(count) % GPUS_PER_HOST):
        raise InputError(f"unknown GPU topology {name!r}: say how many, up to "
                         f"{GPUS_PER_HOST} or a multiple of it (examples: h100:1, h100:8, "
                         "a100:16)")
    if not has_cuda_compiler():
        raise InputError("vrp-sam plan needs jaxlib's CUDA compiler to compile for a GPU: "
                         'pip install -e ".[gpu-plan]"')
    from jax.experimental import topologies

    gpus = int(count)
    hosts = max(1, gpus // GPUS_PER_HOST)
    with tempfile.TemporaryFile() as said, _stderr_to(said):  # the plugin's C++ log lines
        return list(topologies.get_topology_desc(
            card.name, "cuda", target_config=card.target_config(),
            topology=f"1x{hosts}x{gpus // hosts}").devices)


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


def example_batch(config: ml_collections.ConfigDict, model_config: VRPSamConfig, rows: int) -> dict:
    """The loader's batch for this config, as shapes: one toy episode at the config's image
    size, shots and condition (every benchmark's episodes have the same arrays), `rows` of
    it."""
    episode = protocols.training_episodes("toy", 0, config.data.shots, 0, 0)[0]
    options = EpisodeOptions(model_config.image_size, config.data.condition, training=True)
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


def analyse(compiled, hbm_bytes: float | None) -> dict:
    """What one chip holds (`peak_bytes`, against its `hbm_bytes`) and does, for a compiled
    program (one JAX device per chip: `topology_devices`)."""
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # None from XLA's GPU compiler
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
            "flops_per_chip": None if not cost else float(cost["flops"]),
            "bytes_accessed": None if not cost else float(cost["bytes accessed"]),
            "collectives": collectives(compiled.as_text())}


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def compiler_options(device_kind: str) -> dict:
    """XLA options for compiling without the device. For a GPU, matrix products go to cuBLAS
    instead of Triton kernels: Triton's tile sizes are chosen by autotuning on the card, and
    without it XLA 0.10.2 fails on some of SAM's small products ("Couldn't find output tile
    sizes"). The buffers and collectives, which `plan` reports, are the same either way."""
    return {"xla_gpu_enable_triton_gemm": False} if device_kind.startswith("NVIDIA") else {}


def measure(lower_step: Callable, hbm_bytes: float | None, options: dict | None = None
            ) -> dict:
    """`analyse` of the step `lower_step()` lowers, compiled (with XLA `options`), with its
    compile time. The TPU compiler refuses a program whose buffers exceed the chip's HBM: that
    step is reported `fits: false` with the bytes the compiler said it needed, and no FLOPs."""
    start = time.perf_counter()
    try:
        with not_cached():
            compiled = lower_step().compile(compiler_options=options or {})
        result = analyse(compiled, hbm_bytes)
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
    """name -> a function lowering that step of the run for `mesh` (returns `jax.stages.
    Lowered`, to compile): `train` (SAM's image encoder inside), `train_cached` (its
    embeddings from the cache; only where the encoder is frozen), `eval`, `cache` (the
    embedding pre-pass, on one host's chips: `_lower_cache_pass`) and `predict` (`vrp-sam
    predict`'s program: PREDICT_BATCH targets with the config's shots of encoded references,
    on one chip, as `inference.VRPSamPredictor` runs it)."""
    model_config = vrp_sam_config(config)
    sharding.check_batch(config.train.global_batch, mesh)
    rows = config.train.global_batch
    params = abstract_params(model_config)
    trainable, frozen = partition.split(params, tuple(config.train.trainable))
    optimizer = step_lib.make_optimizer(config.train.lr, 1, config.train.weight_decay)
    replicated, rows_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    frozen_sharding = sharding.param_shardings(mesh, frozen)
    state = _with(jax.eval_shape(lambda t: step_lib.init_state(t, optimizer), trainable),
                  replicated)
    batch = example_batch(config, model_config, rows)
    embedding = jax.eval_shape(
        lambda p, x: VRPSam(model_config).apply({"params": p}, normalize_image(x),
                                         method=VRPSam.embed_targets),
        params, batch["query_image"])
    cached = {**batch, "embeddings": jax.ShapeDtypeStruct(
        embedding.shape, DTYPES[config.cache.dtype])}
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated)

    def train(with_batch: dict):
        step = step_lib.jit_train_step(model_config, optimizer, replicated, frozen_sharding,
                                       rows_sharding, replicated, loss=config.train.loss)
        return step.lower(state, _with(frozen, frozen_sharding),
                          _with(with_batch, rows_sharding), key)

    out = {"train": lambda: train(batch)}
    if not trains_sam_image_encoder(tuple(config.train.trainable)):
        out["train_cached"] = lambda: train(cached)
    out["eval"] = lambda: jit_eval_step(model_config, mesh).lower(
        _with(params, sharding.param_shardings(mesh, params)),
        _with(batch, rows_sharding))
    out["cache"] = lambda: _lower_cache_pass(model_config, config.cache.dtype, mesh, params["sam"])
    one = jax.sharding.SingleDeviceSharding(mesh.devices.flat[0])
    size = model_config.image_size
    references = (jax.ShapeDtypeStruct((1, config.data.shots, size, size, 3), jnp.float32),
                  jax.ShapeDtypeStruct((1, config.data.shots, size, size), jnp.float32))
    reference = jax.eval_shape(lambda p, x, m: encode_reference(model_config, p, x, m), params,
                               *references)
    out["predict"] = lambda: predict_logits.lower(
        model_config, _with(params, one), _with(reference, one),
        jax.ShapeDtypeStruct((PREDICT_BATCH, size, size, 3), jnp.float32, sharding=one))
    return out


def _lower_cache_pass(model_config: VRPSamConfig, dtype: str, mesh: jax.sharding.Mesh,
                        sam_params: dict):
    """The embedding pre-pass as one process of the run executes it: over its host's chips
    alone (the first host's, by the devices' process index), data-parallel, whatever the
    training mesh (`embedding_cache.embedding_program`)."""
    devices = list(mesh.devices.flat)
    host = [d for d in devices if d.process_index == devices[0].process_index]
    embed, host_mesh, per_call = embedding_program(model_config, dtype, host)
    size = model_config.image_size
    return embed.lower(
        _with(sam_params, sharding.replicated(host_mesh)),
        jax.ShapeDtypeStruct((per_call, size, size, 3), jnp.uint8,
                             sharding=sharding.batch_sharding(host_mesh)))


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
        lowerings = steps(config, mesh)
    except ConfigError as error:
        raise InputError(f"{topology}: {error}") from None
    report = {}
    for name, lower_step in lowerings.items():
        if name not in only:
            continue
        progress(f"compiling {name} for {topology} ...")
        report[name] = measure(lower_step, None if chip is None else chip.hbm_bytes,
                               compiler_options(kind))
        if report[name]["flops_per_chip"] is None and "refused" not in report[name]:
            # a GPU program: its compiler does not count them
            report[name]["flops_per_chip"] = flops_of_one_share(config, name, mesh)
    result = {"topology": topology, "chips": len(devices), "device_kind": kind,
              "hbm_bytes_per_chip": None if chip is None else chip.hbm_bytes,
              "fit_margin": FIT_MARGIN, "mesh": {"data": mesh.shape["data"],
                                                 "model": mesh.shape["model"]},
              "global_batch": config.train.global_batch, "steps": report,
              "estimate": estimate(config, report, chip)}
    return result


def flops_of_one_share(config: ml_collections.ConfigDict, name: str,
                       mesh: jax.sharding.Mesh) -> float:
    """One device's FLOPs in step `name` on `mesh`, for a compiler that does not count them
    (XLA's GPU compiler): XLA's count, before optimisation, of the step lowered for this
    machine's CPU on one device's share of the work: global batch / data axis rows (`cache`:
    the images one device embeds per call). Exact for a data-parallel mesh; where a model axis
    splits SAM's weights, each device is counted as doing its rows' whole work."""
    share = ml_collections.ConfigDict(config.to_dict())
    share.train.global_batch = config.train.global_batch // mesh.shape["data"]
    share.mesh.data, share.mesh.model = 1, 1
    cpu = sharding.make_mesh(devices=jax.devices("cpu")[:1])
    flops = float(steps(share, cpu)[name]().cost_analysis()["flops"])
    if name == "cache":  # the CPU program embeds images_per_call(1) images
        devices = list(mesh.devices.flat)
        host = sum(d.process_index == devices[0].process_index for d in devices)
        flops *= images_per_call(host) / host / images_per_call(1)
    return flops


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
    lines = [f"{result['topology']}: {result['chips']} x {result['device_kind']}"
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
