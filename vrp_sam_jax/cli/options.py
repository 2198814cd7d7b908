"""Argument types and the option groups several commands share."""

from __future__ import annotations

import argparse
import math

from vrp_sam_jax import names


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _numbers(text: str, count: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected a {what} of {count} finite numbers, got "
                                         f"{text!r}")
    return values


def positive_number(text: str) -> float:
    """A finite number > 0."""
    (value,) = _numbers(text, 1, "number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def count(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def point(text: str) -> tuple[float, float]:
    x, y = _numbers(text, 2, "point 'x,y'")
    return x, y


def box(text: str) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = _numbers(text, 4, "box 'x0,y0,x1,y1'")
    if x1 <= x0 or y1 <= y0:
        raise argparse.ArgumentTypeError(f"box {text!r} is empty (need x0 < x1 and y0 < y1)")
    return x0, y0, x1, y1


def boxes(text: str) -> list[tuple[float, float, float, float]]:
    return [box(part) for part in text.split(";") if part.strip()]


def points(text: str) -> list[tuple[float, float]]:
    out = [point(part) for part in text.split(";") if part.strip()]
    if not out:
        raise argparse.ArgumentTypeError(f"expected points 'x,y;x,y', got {text!r}")
    return out


def which(text: str) -> str | int:
    """best | latest | a step number."""
    if text in names.CHECKPOINTS:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {' or '.join(names.CHECKPOINTS)} or a step number, got {text!r}"
        ) from None


def add_model_source(p: argparse.ArgumentParser, flag: str = "--checkpoint",
                     sam_required: bool = False, required: bool = True) -> None:
    """The options of a command that reads a model (`model_io.load`)."""
    p.add_argument(flag, required=required, default=None, dest="source",
                   help="training work directory, converted directory (vrp-sam export), or "
                        "the release's best_model.pt")
    p.add_argument("--which", type=which, default="best",
                   help="checkpoint of a work directory: best (default), latest, or a step")
    p.add_argument("--sam-checkpoint", required=sam_required, default=None,
                   help="SAM (official .pth or converted directory); default: the model's own "
                        "(a work directory's config, or the exported directory)")
    p.add_argument("--sam-type", choices=names.SAM_MODEL_TYPES, default=None,
                   help="checked against the SAM read")
    p.add_argument("--backbone", choices=names.BACKBONES, default=None,
                   help="checked against the checkpoint; inferred when omitted")


def load_model(args: argparse.Namespace, compute_dtype: str = "float32", *,
               config=None, fold: int | None = None):
    """The model that `add_model_source`'s flags (and --backbone-checkpoint, where a command
    has it) name, decided here for every command that reads one (predict, export, the app,
    evaluate): the checkpoint given (`model_io.load`: a work directory, a converted directory,
    the release's file); else a SAM and a backbone without a VRP encoder (GP-SAM only), where
    either is given; else None (the command decides: `predict` refuses, the app prepares its
    toy model).

    `config` (evaluate's run config, an `ml_collections.ConfigDict`) fills in what the flags
    leave out: the SAM and backbone files (`init`), the model's kind and dtype (`model`), and,
    with no file named anywhere and `init.random`, its random weights (the toy benchmark); with
    it, a frozen model is always attempted (one line names the missing files). `fold` replaces
    `{fold}` in the checkpoint's path (evaluate --all-folds: one run per fold)."""
    from vrp_sam_jax import model_io

    def flag_or_init(flag: str | None, field: str) -> str | None:
        return flag or (config.init[field] if config is not None else None) or None

    sam = flag_or_init(args.sam_checkpoint, "sam_checkpoint")
    backbone_weights = flag_or_init(getattr(args, "backbone_checkpoint", None),
                                    "backbone_checkpoint")
    if config is None:
        kind = {"sam_type": args.sam_type, "backbone": args.backbone,
                "compute_dtype": compute_dtype, "attention": "auto"}
    else:
        kind = {field: config.model[field]
                for field in ("sam_type", "backbone", "compute_dtype", "attention")}
    if args.source is not None:
        source = args.source if fold is None else args.source.format(fold=fold)
        return model_io.load(source, which=args.which, sam=sam, **kind)
    if config is not None and config.init.random and not (sam or backbone_weights):
        from vrp_sam_jax.config import vrp_sam_config

        return model_io.random_model(vrp_sam_config(config), config.init.seed)
    if sam or backbone_weights or config is not None:
        image_size = {} if config is None else {"image_size": config.model.image_size}
        return model_io.load_frozen(sam, backbone_weights, backbone_name=kind.pop("backbone"),
                                    **image_size, **kind)
    return None


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def unit_interval(text: str) -> float:
    """A number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def add_gp_sam(p: argparse.ArgumentParser) -> None:
    """`--method` and GP-SAM's options (the geometric-prompt baseline, no trained encoder)."""
    p.add_argument("--method", choices=names.METHODS, default="vrp",
                   help="vrp: the model's VRP prompts; gp-sam: SAM prompted with points and/or "
                        "a box from the training-free pseudo mask (needs no trained encoder)")
    p.add_argument("--gp-prompts", choices=names.GP_PROMPTS, default="box+point",
                   help="GP-SAM's prompts: 5 points in the pseudo mask, its box, or both")
    p.add_argument("--gp-threshold", type=unit_interval, default=0.5,
                   help="GP-SAM: pseudo-mask threshold on the min-max normalised prior")
    p.add_argument("--backbone-checkpoint", default=None,
                   help="GP-SAM without a VRP checkpoint: backbone weights (evaluate's "
                        "default: init.backbone_checkpoint)")


def add_compile_cache(p: argparse.ArgumentParser) -> None:
    """`--compile-cache`: where JAX keeps the programs it compiled (`compile_cache.use`)."""
    p.add_argument("--compile-cache", default=None, metavar="DIR|none",
                   help="JAX's persistent compilation cache, so that a later run (a resumed "
                        "training, the same model evaluated again) compiles nothing it compiled "
                        "before; default: $JAX_COMPILATION_CACHE_DIR, else ~/.cache/vrp-sam/jax; "
                        "none: off")


def add_distributed(p: argparse.ArgumentParser) -> None:
    """The options that start JAX's multi-process runtime (`processes.initialize`)."""
    g = p.add_argument_group("several processes (docs/LAUNCH.md)")
    g.add_argument("--distributed", action="store_true",
                   help="start JAX's multi-process runtime; with none of the options below, "
                        "JAX detects the TPU pod or SLURM job itself")
    g.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                   help="process 0's address, the same for every process")
    g.add_argument("--num-processes", type=positive_int, default=None, metavar="N")
    g.add_argument("--process-id", type=count, default=None, metavar="I",
                   help="this process's index, 0..N-1")


def start_processes(args: argparse.Namespace) -> None:
    """Start the multi-process runtime when the options ask for it (any of them does)."""
    wanted = (args.coordinator_address, args.num_processes, args.process_id)
    if args.distributed or any(v is not None for v in wanted):
        from vrp_sam_jax.runtime import processes

        processes.initialize(*wanted)
