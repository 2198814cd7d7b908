"""Runs: `train`, `evaluate`, `demo`, and `plan` (a run compiled ahead of time for a TPU slice
or GPUs)."""

from __future__ import annotations

import argparse
import json

from vrp_sam_jax import names
from vrp_sam_jax.cli import options

CONFIG_HELP = ("a shipped config (pascal, coco, toy) or a config file, optionally with its "
               "argument: pascal:resnet50,box or configs/pascal.py:vgg16")


def train(args: argparse.Namespace) -> int:
    from vrp_sam_jax.config import load_config

    options.start_processes(args)
    config = load_config(args.config, args.overrides)
    from vrp_sam_jax.training.trainer import train as run

    budget = None if args.stop_after_minutes is None else 60 * args.stop_after_minutes
    result = run(config, args.workdir, progress=not args.quiet, stop_after_seconds=budget)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                      for k, v in result.items()}))
    return 0


def _evaluation_config(args: argparse.Namespace):
    """The config: --config, else the run's own (the checkpoint is a work directory)."""
    from vrp_sam_jax.config import apply_overrides, check_values, load_config
    from vrp_sam_jax.errors import InputError
    from vrp_sam_jax.training.run_dir import is_run_dir, read_config

    overrides = [*args.overrides, *([f"data.fold={args.fold}"] if args.fold is not None else [])]
    if args.config:
        return load_config(args.config, overrides)
    if args.source is None:
        raise InputError("give --checkpoint, or --config (GP-SAM from the config's init)")
    first = args.source.format(fold=args.fold or 0)
    if not is_run_dir(first):
        raise InputError(f"{first}: not a training work directory, so give --config (the "
                         "dataset root, the batch and the model come from it)")
    return check_values(apply_overrides(read_config(first), overrides), first)


def evaluate(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data import protocols
    from vrp_sam_jax.data.roots import make_source
    from vrp_sam_jax.errors import InputError
    from vrp_sam_jax.evaluation import fold as folds
    from vrp_sam_jax.evaluation.report import write_results
    from vrp_sam_jax.runtime import sharding
    from vrp_sam_jax.training.run_dir import is_run_dir

    if args.source is None and args.method == "vrp":
        raise InputError("--checkpoint is needed (only --method gp-sam runs without a trained "
                         "model)")
    options.start_processes(args)
    config = _evaluation_config(args)
    benchmark = names.CROSS_DOMAIN if args.cross_domain else (args.benchmark
                                                               or config.data.benchmark)
    if args.all_folds and not protocols.folds(benchmark):
        raise InputError(f"--all-folds: {benchmark} has no folds; leave it out")
    settings = folds.EvalSettings(
        benchmark=benchmark, shots=args.shots or config.data.shots,
        protocol=args.protocol or protocols.default_protocol(benchmark),
        condition=args.condition or config.data.condition, num_episodes=args.num_episodes,
        original_size=args.original_size, figures=args.figures,
        global_batch=config.train.global_batch, workers=config.data.workers or None,
        method=args.method, gp_prompts=args.gp_prompts, gp_threshold=args.gp_threshold)
    source = make_source(settings.dataset, args.data_root or config.data.root or None,
                         settings.shots)
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)

    def model_for_fold(fold: int):
        return options.load_model(args, config=config, fold=fold)

    progress = not args.quiet
    if args.all_folds:
        if args.source is not None and "{fold}" not in args.source and not is_run_dir(
                args.source):
            raise InputError(f"{args.source}: --all-folds needs one checkpoint per fold; put "
                             "{fold} in the path (runs/pascal_f{fold})")
        result = folds.evaluate_all_folds(model_for_fold, source, settings, mesh,
                                          args.output_dir, progress)
        print(result["markdown"])
        print(f"report: {_report(args.output_dir, 'all_folds')}")
        return 0
    fold = config.data.fold
    result = folds.evaluate_fold(model_for_fold(fold), source, fold, settings, mesh,
                                 args.output_dir, progress)
    write_results(args.output_dir, f"fold{fold}", result, folds.fold_markdown(result, settings))
    print(json.dumps({**{k: result[k] for k in ("benchmark", "fold", "shots", "condition",
                                                "protocol", "method", "miou", "fb_iou",
                                                "episodes")},
                      "report": _report(args.output_dir, f"fold{fold}")}))
    return 0


def _report(output_dir: str, name: str) -> str:
    """Where the report `name` went: its Markdown (a JSON beside it), as a full path."""
    from vrp_sam_jax.storage.paths import absolute

    return str(absolute(output_dir) / f"{name}.md")


def demo(args: argparse.Namespace) -> int:
    from vrp_sam_jax import demo as run

    return run.main(args.output_dir, args.overrides, progress=not args.quiet)


def plan(args: argparse.Namespace) -> int:
    import sys

    from vrp_sam_jax.config import load_config
    from vrp_sam_jax.training import plan as planner

    config = load_config(args.config, args.overrides)
    say = (lambda _: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    result = planner.plan(config, args.topology, progress=say,
                          only=args.steps or planner.STEP_NAMES)
    print(json.dumps(result) if args.json else planner.table(result))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train VRP-SAM from a config (ml_collections file)")
    p.add_argument("--config", required=True, help=CONFIG_HELP)
    p.add_argument("--workdir", required=True,
                   help="checkpoints, TensorBoard events and config.json; a run resumes here")
    p.add_argument("--stop-after-minutes", type=options.positive_number, default=None,
                   help="stop (with a checkpoint) after this long; the same command resumes")
    options.add_distributed(p)
    options.add_compile_cache(p)
    options.add_quiet(p)
    p.set_defaults(func=train, overrides_allowed=True)

    p = sub.add_parser("evaluate", help="mIoU / FB-IoU of a model on a fold's episodes")
    p.add_argument("--config", default=None,
                   help=CONFIG_HELP + "; default: the work directory's own config")
    p.add_argument("--checkpoint", default=None, dest="source",
                   help="training work directory, converted directory or the release's "
                        "best_model.pt ({fold} is replaced with --all-folds); GP-SAM uses "
                        "its backbone and SAM, or the config's init without it")
    p.add_argument("--which", type=options.which, default="best",
                   help="checkpoint of a work directory: best (default), latest, or a step")
    p.add_argument("--sam-checkpoint", default=None,
                   help="SAM for a checkpoint without one (default: init.sam_checkpoint)")
    p.add_argument("--fold", type=int, default=None,
                   help="fold (default: config.data.fold; lvis: 0-9)")
    p.add_argument("--shots", type=options.positive_int, default=None,
                   help="default: config.data.shots")
    p.add_argument("--protocol", default=None, choices=names.PROTOCOLS,
                   help="episode sampler: hsnet (HSNet's lists), vrp (the release's), patnet "
                        "(PATNet's, for deepglobe, isic, lung, fss) or matcher (Matcher's, for "
                        "lvis); default: patnet for deepglobe, isic, lung, matcher for lvis, "
                        "else hsnet")
    p.add_argument("--condition", default=None, choices=names.CONDITIONS,
                   help="reference annotation (default: config.data.condition)")
    p.add_argument("--benchmark", default=None, choices=names.BENCHMARKS,
                   help="evaluate on another benchmark than the config's (e.g. PATNet's "
                        "cross-domain deepglobe, isic, lung, fss with a PASCAL-trained run)")
    p.add_argument("--data-root", default=None,
                   help="the evaluated benchmark's dataset root (default: config.data.root)")
    p.add_argument("--cross-domain", action="store_true",
                   help="COCO-20i-trained model on PASCAL, COCO-unseen classes (Table 4)")
    p.add_argument("--original-size", action="store_true",
                   help="measure at each target's original size instead of the model grid")
    p.add_argument("--num-episodes", type=options.positive_int, default=None,
                   help="default 1000")
    p.add_argument("--all-folds", action="store_true", help="the four folds and their table")
    p.add_argument("--figures", type=options.count, default=8,
                   help="episodes drawn into the PNG report (0: none)")
    p.add_argument("--output-dir", default="eval_out")
    options.add_gp_sam(p)
    options.add_distributed(p)
    options.add_compile_cache(p)
    options.add_quiet(p)
    p.set_defaults(func=evaluate, overrides_allowed=True)

    p = sub.add_parser("demo", help="embedded demo: VRP-SAM learns the toy benchmark on a CPU "
                                    "(no download, no dataset)")
    p.add_argument("--output-dir", default="demo_out")
    options.add_compile_cache(p)
    options.add_quiet(p)
    p.set_defaults(func=demo, overrides_allowed=True)

    p = sub.add_parser("plan", help="compile a run's steps ahead of time for a TPU slice or "
                                    "GPUs (none needed): bytes per chip, FLOPs, collectives")
    p.add_argument("--config", required=True, help=CONFIG_HELP)
    p.add_argument("--topology", required=True,
                   help="TPU slice as JAX names it (v5e:1x1, v5e:2x2, v5e:4x4, v4:2x2x2, "
                        "v5p:2x2x1, ...) or GPUs as CARD:COUNT (h100:8, a100:16, h200:1)")
    p.add_argument("--steps", type=lambda text: tuple(text.split(",")),
                   default=None,
                   help="which steps to compile, comma-separated (default: all of train, "
                        "train_cached, eval, cache, predict that the run executes)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    options.add_quiet(p)
    p.set_defaults(func=plan, overrides_allowed=True)
