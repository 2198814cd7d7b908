"""The `vrp-sam` command line."""

from __future__ import annotations

import argparse
import collections
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sam_port.torch_pickle import CheckpointError
from vrp_sam_jax.image_io import InputError

SAM_TYPES = ["vit_b", "vit_l", "vit_h", "tiny"]
BACKBONE_NAMES = ["resnet50", "resnet101", "vgg16", "resnet_tiny"]
COMPUTE_DTYPES = ["float32", "bfloat16", "float16"]  # vrp_sam_jax.models.COMPUTE_DTYPES


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a point 'x,y', got {text!r}") from None
    return x, y


def _parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a box 'x0,y0,x1,y1', got {text!r}") from None
    if x1 <= x0 or y1 <= y0:
        raise argparse.ArgumentTypeError(f"box {text!r} is empty (need x0 < x1 and y0 < y1)")
    return x0, y0, x1, y1


def _parse_boxes(text: str) -> list[tuple[float, float, float, float]]:
    return [_parse_box(part) for part in text.split(";") if part.strip()]


def _parse_points(text: str) -> list[tuple[float, float]]:
    points = [_parse_point(part) for part in text.split(";") if part.strip()]
    if not points:
        raise argparse.ArgumentTypeError(f"expected points 'x,y;x,y', got {text!r}")
    return points


def _cmd_convert_sam(args: argparse.Namespace) -> int:
    import sam_port

    sam = sam_port.load_sam(args.checkpoint, args.model_type)
    out = sam_port.save_sam(sam, args.output)
    print(json.dumps({"model_type": sam.model_type, "output": str(out)}))
    return 0


def _cmd_sam_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    import sam_port
    from vrp_sam_jax.image_io import overlay, read_image, write_mask

    if not args.point and not args.box:
        raise InputError("give at least one --point or --box")
    image = read_image(args.image)
    sam = sam_port.load_sam(args.checkpoint, args.model_type)
    predictor = sam_port.SamPredictor(sam)
    predictor.set_image(image)
    points = labels = None
    if args.point or args.negative_point:
        points = np.array(args.point + args.negative_point, np.float32)
        labels = np.array([1] * len(args.point) + [0] * len(args.negative_point))
    masks, scores, _ = predictor.predict(
        point_coords=points, point_labels=labels,
        box=None if args.box is None else np.array(args.box), multimask_output=args.multimask,
    )
    best = int(np.argmax(scores))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_mask(out, masks[best])
    overlay_path = out.with_name(out.stem + "_overlay.png")
    Image.fromarray(overlay(image, masks[best], points=points)).save(overlay_path)
    print(json.dumps({"mask": str(out), "overlay": str(overlay_path),
                      "iou_prediction": round(float(scores[best]), 4),
                      "mask_pixels": int(masks[best].sum())}))
    return 0


def _cmd_convert_vrp(args: argparse.Namespace) -> int:
    from vrp_sam_jax import checkpoints
    from vrp_sam_jax.models import count_params

    weights = checkpoints.load_vrp(args.checkpoint, args.backbone)
    out = checkpoints.save_vrp(weights, args.output)
    print(json.dumps({"backbone": weights.backbone, "output": str(out),
                      "encoder_parameters": count_params(weights.params["encoder"])}))
    return 0


def _cmd_convert_backbone(args: argparse.Namespace) -> int:
    from vrp_sam_jax import checkpoints

    name, params = checkpoints.load_backbone(args.checkpoint, args.backbone)
    out = checkpoints.save_backbone(name, params, args.output)
    print(json.dumps({"backbone": name, "output": str(out)}))
    return 0


def _reference_prompt_masks(args: argparse.Namespace, images: list, size: int) -> list:
    """One prompt mask on the size x size grid per reference, from the annotation given."""
    from vrp_sam_jax import conditions
    from vrp_sam_jax.image_io import read_mask
    from vrp_sam_jax.preprocess import resize_mask_nearest

    given = {"--reference-mask": args.reference_mask, "--reference-box": args.reference_box,
             "--reference-points": args.reference_points,
             "--reference-scribble": args.reference_scribble}
    used = {k: v for k, v in given.items() if v}
    if len(used) != 1:
        raise InputError("annotate the references with exactly one of " + ", ".join(given))
    (option, values), = used.items()
    if len(values) != len(images):
        raise InputError(f"{len(images)} --reference image(s) but {len(values)} {option} "
                         "annotation(s): give one per reference, in the same order")
    masks = []
    for path, image, value in zip(args.reference, images, values, strict=True):
        shape = image.shape[:2]
        if option in ("--reference-mask", "--reference-scribble"):
            drawn = read_mask(value)
            if drawn.shape != shape:
                raise InputError(f"{value}: annotation is {drawn.shape[1]}x{drawn.shape[0]} "
                                 f"but reference {path} is {shape[1]}x{shape[0]}")
            label = value
            if option == "--reference-mask":
                m = resize_mask_nearest(drawn, size).astype("float32")
            else:
                m = conditions.rasterize_scribble(drawn, size)
        elif option == "--reference-box":
            m, label = conditions.rasterize_boxes(value, shape, size), f"{path} (box)"
        else:
            m, label = conditions.rasterize_points(value, shape, size), f"{path} (points)"
        if not m.any():
            raise InputError(f"{label}: empty reference annotation (no foreground pixel)")
        masks.append(m)
    return masks


def _unique_stems(paths: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from vrp_sam_jax.image_io import overlay, read_image, write_mask
    from vrp_sam_jax.inference import VRPSamPredictor, load_model

    refs = [read_image(p) for p in args.reference]
    for p in args.targets:  # fail before any work on a missing or corrupt target
        if not Path(p).is_file():
            raise InputError(f"{p}: no such image file")
    model = load_model(args.sam_checkpoint, args.sam_type, args.vrp_checkpoint, args.backbone,
                       args.compute_dtype)
    predictor = VRPSamPredictor(model)
    predictor.set_references(refs, _reference_prompt_masks(args, refs, predictor.size))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    read: collections.deque = collections.deque()  # images read, not yet written out

    def images():  # read lazily, batch by batch (at most two batches held)
        for p in args.targets:
            read.append(read_image(p))
            yield read[-1]

    # a batch never holds more targets than there are
    results = predictor.predict_many(images(), min(args.batch_size, len(args.targets)))
    for path, stem, (mask, logits) in tqdm(
            zip(args.targets, _unique_stems(args.targets), results, strict=True),
            total=len(args.targets), desc="targets", unit="image", disable=None):
        image = read.popleft()
        write_mask(out / f"{stem}.png", mask)
        Image.fromarray(overlay(image, mask)).save(out / f"{stem}_overlay.png")
        if args.save_logits:
            np.save(out / f"{stem}_logits.npy", logits)
        written.append({"target": path, "mask": str(out / f"{stem}.png"),
                        "foreground": round(float(mask.mean()), 4)})
    print(json.dumps({"shots": len(refs), "backbone": model.config.backbone,
                      "sam_type": model.config.sam_type, "outputs": written}))
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from vrp_sam_jax.models import VRPSamConfig, summary

    info = summary(VRPSamConfig(args.backbone, args.sam_type))
    for key, value in info.items():
        print(f"{key:>16}: {value:,}" if isinstance(value, int) else f"{key:>16}: {value}")
    return 0


def _cmd_episodes(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data import protocols

    present = None
    if args.data_root:
        from vrp_sam_jax.data.sources import make_source

        present = make_source(args.benchmark, args.data_root).present_classes
    try:
        eps = protocols.episodes(args.benchmark, args.fold, args.shots, args.protocol, args.num,
                                 present)
    except ValueError as e:
        raise InputError(str(e)) from e
    if args.json:
        print(json.dumps([e.to_dict() for e in eps]))
    else:
        for i, e in enumerate(eps):
            print(f"{i}\t{e.class0}\t{e.query}\t{' '.join(e.supports)}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from vrp_sam_jax.training.config import load_config

    if args.distributed:
        import jax

        jax.distributed.initialize()
    config = load_config(args.config, args.overrides)
    from vrp_sam_jax.training.trainer import train

    result = train(config, args.workdir, progress=not args.quiet)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                      for k, v in result.items()}))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from vrp_sam_jax import fold_evaluation as fe
    from vrp_sam_jax.report import fold_table, table_markdown, write_results
    from vrp_sam_jax.training.config import apply_overrides, load_config

    config = load_config(args.config, args.overrides)
    if args.fold is not None:
        config = apply_overrides(config, [f"data.fold={args.fold}"])
    benchmark = "coco2pascal" if args.cross_domain else (args.benchmark or config.data.benchmark)
    settings = fe.EvalSettings(benchmark, args.shots or config.data.shots, args.protocol,
                               args.condition or config.data.condition, args.num_episodes,
                               args.original_size, args.figures)
    progress = not args.quiet
    if args.all_folds:
        result = fe.evaluate_all_folds(config, args.checkpoint, settings, args.output_dir,
                                       progress)
        print(result["markdown"])
        return 0
    fold = config.data.fold
    result = fe.evaluate_fold(config, args.checkpoint, fold, settings, args.output_dir,
                              progress)
    markdown = table_markdown(fold_table({fold: result}),
                              f"{benchmark} fold {fold}, {settings.shots}-shot, "
                              f"{settings.condition}, protocol {settings.protocol}")
    markdown += "\n| class | IoU |\n| --- | --- |\n" + "".join(
        f"| {result['class_names'].get(c, c)} | {v:.1f} |\n"
        for c, v in result["class_iou"].items())
    write_results(args.output_dir, f"fold{fold}", result, markdown)
    print(json.dumps({k: result[k] for k in ("benchmark", "fold", "shots", "condition",
                                             "protocol", "miou", "fb_iou", "episodes")}))
    return 0


def _cmd_prepare_coco(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data.coco_masks import prepare_coco

    for summary in prepare_coco(args.coco_root, args.splits, progress=not args.quiet):
        print(json.dumps(summary))
    return 0


def _cmd_sam_demo(args: argparse.Namespace) -> int:
    from vrp_sam_jax import sam_demo

    return sam_demo.main(args.model_type, args.sam_checkpoint, args.output_dir)


def _cmd_demo(args: argparse.Namespace) -> int:
    from vrp_sam_jax import demo

    return demo.main(args.output_dir, args.overrides, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vrp-sam", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert-sam", help="official SAM .pth -> our orbax directory")
    p.add_argument("--model-type", choices=SAM_TYPES, default=None,
                   help="checked against the file; inferred when omitted")
    p.add_argument("--checkpoint", required=True, help="sam_vit_{b,l,h}_*.pth")
    p.add_argument("--output", required=True, help="directory to write")
    p.set_defaults(func=_cmd_convert_sam)

    p = sub.add_parser("sam-predict", help="segment one image with SAM from points and/or a box")
    p.add_argument("--checkpoint", required=True, help="official .pth or converted directory")
    p.add_argument("--model-type", choices=SAM_TYPES, default=None)
    p.add_argument("--image", required=True)
    p.add_argument("--point", type=_parse_point, action="append", default=[],
                   help="foreground point x,y in pixels (repeatable)")
    p.add_argument("--negative-point", type=_parse_point, action="append", default=[],
                   help="background point x,y (repeatable)")
    p.add_argument("--box", type=_parse_box, default=None, help="x0,y0,x1,y1 in pixels")
    p.add_argument("--multimask", action="store_true",
                   help="predict 3 masks and keep the best-scored (good for a single point)")
    p.add_argument("--output", required=True, help="mask PNG to write")
    p.set_defaults(func=_cmd_sam_predict)

    p = sub.add_parser("convert-vrp", help="the release's best_model.pt -> our directory")
    p.add_argument("--checkpoint", required=True, help="VRP-SAM best_model.pt")
    p.add_argument("--backbone", choices=BACKBONE_NAMES, default=None,
                   help="checked against the file; inferred when omitted")
    p.add_argument("--output", required=True, help="directory to write")
    p.set_defaults(func=_cmd_convert_vrp)

    p = sub.add_parser("convert-backbone",
                       help="PSPNet resnet{50,101}_v2.pth or torchvision vgg16_bn -> directory")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--backbone", choices=BACKBONE_NAMES, default=None)
    p.add_argument("--output", required=True, help="directory to write")
    p.set_defaults(func=_cmd_convert_backbone)

    p = sub.add_parser("predict", help="segment targets like the annotated reference(s)")
    p.add_argument("--sam-checkpoint", required=True, help="official .pth or converted dir")
    p.add_argument("--sam-type", choices=SAM_TYPES, default=None)
    p.add_argument("--vrp-checkpoint", required=True, help="best_model.pt or converted dir")
    p.add_argument("--backbone", choices=BACKBONE_NAMES, default=None)
    p.add_argument("--reference", action="append", required=True,
                   help="reference image (repeat for k-shot)")
    p.add_argument("--reference-mask", action="append", default=[],
                   help="mask PNG of a reference (non-zero = object), one per --reference")
    p.add_argument("--reference-box", type=_parse_boxes, action="append", default=[],
                   help="x0,y0,x1,y1[;x0,y0,x1,y1] in reference pixels, one per --reference")
    p.add_argument("--reference-points", type=_parse_points, action="append", default=[],
                   help="x,y[;x,y...] in reference pixels, one per --reference")
    p.add_argument("--reference-scribble", action="append", default=[],
                   help="scribble PNG (non-zero = drawn), one per --reference")
    p.add_argument("targets", nargs="+", help="target images")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--save-logits", action="store_true",
                   help="also write the 512x512 logits as NAME_logits.npy")
    p.add_argument("--batch-size", type=_positive_int, default=8,
                   help="targets per device call (one compiled program for all sizes)")
    p.add_argument("--compute-dtype", choices=COMPUTE_DTYPES, default="float32",
                   help="compute dtype of the frozen backbone and SAM image encoder")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("summary", help="parameter counts of a VRP-SAM architecture")
    p.add_argument("--backbone", choices=BACKBONE_NAMES, default="resnet50")
    p.add_argument("--sam-type", choices=SAM_TYPES, default="vit_h")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("episodes", help="print a benchmark fold's evaluation episodes")
    p.add_argument("--benchmark", choices=["pascal", "coco", "fss", "toy"], required=True)
    p.add_argument("--fold", type=int, default=0, help="0-3 (ignored for fss)")
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--protocol", default="hsnet",
                   help="episode sampler: HSNet's (seed 0) or the VRP-SAM release's (seed 321)")
    p.add_argument("--data-root", default=None,
                   help="dataset root: the vrp PASCAL sampler then reads each query's classes "
                        "from its mask, as the release does (default: from the split lists)")
    p.add_argument("--num", type=int, default=None,
                   help="number of episodes (default 1000; fss: every test image once)")
    p.add_argument("--json", action="store_true", help="JSON list instead of lines")
    p.set_defaults(func=_cmd_episodes)

    p = sub.add_parser("train", help="train VRP-SAM from a config (ml_collections file)")
    p.add_argument("--config", required=True,
                   help="config file, optionally with an argument: configs/pascal.py:resnet50,box")
    p.add_argument("--workdir", required=True,
                   help="checkpoints, TensorBoard events and config.json; a run resumes here")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host launches)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train, overrides_allowed=True)

    p = sub.add_parser("evaluate", help="mIoU / FB-IoU of a checkpoint on a fold's episodes")
    p.add_argument("--config", required=True, help="config file (dataset root, model, batch)")
    p.add_argument("--checkpoint", required=True,
                   help="training workdir, the release's best_model.pt, or a converted "
                        "directory ({fold} is replaced with --all-folds)")
    p.add_argument("--fold", type=int, default=None, help="fold (default: config.data.fold)")
    p.add_argument("--shots", type=int, default=None, help="default: config.data.shots")
    p.add_argument("--protocol", default="hsnet", help="episode sampler: hsnet or vrp")
    p.add_argument("--condition", default=None, choices=["mask", "box", "scribble", "point"],
                   help="reference annotation (default: config.data.condition)")
    p.add_argument("--benchmark", default=None, choices=["pascal", "coco", "fss", "toy"],
                   help="evaluate on another benchmark than the config's")
    p.add_argument("--cross-domain", action="store_true",
                   help="COCO-20i-trained model on PASCAL, COCO-unseen classes (Table 4)")
    p.add_argument("--original-size", action="store_true",
                   help="measure at each target's original size instead of 512x512")
    p.add_argument("--num-episodes", type=int, default=None, help="default 1000")
    p.add_argument("--all-folds", action="store_true", help="the four folds and their table")
    p.add_argument("--figures", type=int, default=8,
                   help="episodes drawn into the PNG report (0: none)")
    p.add_argument("--output-dir", default="eval_out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_evaluate, overrides_allowed=True)

    p = sub.add_parser("prepare-coco",
                       help="build COCO-20i per-image class masks from instances_*.json")
    p.add_argument("--coco-root", required=True,
                   help="folder with annotations/instances_{train,val}2014.json; masks go to "
                        "annotations/{train2014,val2014}/")
    p.add_argument("--splits", nargs="+", default=["train2014", "val2014"],
                   choices=["train2014", "val2014"])
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_prepare_coco)

    p = sub.add_parser("demo", help="embedded demo: VRP-SAM learns the toy benchmark on a CPU "
                                    "(no download, no dataset)")
    p.add_argument("--output-dir", default="demo_out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo, overrides_allowed=True)

    p = sub.add_parser("sam-demo", help="SAM alone: checkpoint round trip and one point prompt "
                                        "on a generated image")
    p.add_argument("--model-type", choices=SAM_TYPES, default=None,
                   help="random weights of this type (default tiny), or the checkpoint's type")
    p.add_argument("--sam-checkpoint", default=None,
                   help="use real SAM weights (.pth or converted directory)")
    p.add_argument("--output-dir", default="sam_demo_out")
    p.set_defaults(func=_cmd_sam_demo)
    return parser


def _config_overrides(parser: argparse.ArgumentParser, extra: list[str]) -> list[str]:
    """`--config.a.b=value` or `--config.a.b value` -> ["a.b=value", ...]."""
    out, i = [], 0
    while i < len(extra):
        item = extra[i]
        if not item.startswith("--config."):
            parser.error(f"unrecognized arguments: {' '.join(extra[i:])}")
        if "=" in item:
            out.append(item[len("--config."):])
            i += 1
        elif i + 1 < len(extra):
            out.append(f"{item[len('--config.'):]}={extra[i + 1]}")
            i += 2
        else:
            parser.error(f"{item}: missing value")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "overrides_allowed", False):
        args.overrides = _config_overrides(parser, extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except (CheckpointError, InputError, FileNotFoundError) as e:
        print(f"vrp-sam: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
