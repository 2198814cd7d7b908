"""VRP-SAM models: `predict`, `predict-video`, `export`, `convert-vrp`, `convert-backbone`,
`summary`."""

from __future__ import annotations

import argparse
import json
import os

from vrp_sam_jax import names
from vrp_sam_jax.cli import options

ANNOTATION_OPTIONS = {option: kind for kind, option in names.REFERENCE_OPTIONS.items()}


def _annotation(args: argparse.Namespace) -> tuple[str, list]:
    """(kind, one annotation per reference) from exactly one --reference-* option."""
    from vrp_sam_jax.errors import InputError

    given = {option: getattr(args, option[2:].replace("-", "_"))
             for option in ANNOTATION_OPTIONS}
    used = {option: values for option, values in given.items() if values}
    if len(used) != 1:
        raise InputError("annotate the references with exactly one of "
                         + ", ".join(ANNOTATION_OPTIONS))
    (option, values), = used.items()
    return ANNOTATION_OPTIONS[option], values


def _predict_model(args: argparse.Namespace):
    from vrp_sam_jax import model_io
    from vrp_sam_jax.errors import CheckpointError, InputError

    if args.source is None and args.method != "gp-sam":
        raise InputError("--vrp-checkpoint is needed (only --method gp-sam runs without a "
                         "trained model: give --sam-checkpoint and --backbone-checkpoint)")
    model = options.load_model(args, args.compute_dtype)
    if model is None:  # neither file given: load_frozen's line for a half-given pair
        raise CheckpointError(model_io.FROZEN_FILES_NEEDED)
    return model


def predict(args: argparse.Namespace) -> int:
    from vrp_sam_jax.inference import VRPSamPredictor, predict_files
    from vrp_sam_jax.storage.image_io import read_image, require_images
    from vrp_sam_jax.storage.outputs import check_outputs, output_dir
    from vrp_sam_jax.transforms import annotations

    kind, values = _annotation(args)
    refs = [read_image(p) for p in args.reference]
    require_images(args.targets)  # every target decodes, before any work or output
    output_dir(args.output_dir, create=False)
    annotation_files = values if kind in ("mask", "scribble") else []
    check_outputs(args.targets, args.output_dir, args.save_logits,
                  [*args.reference, *annotation_files], args.overwrite)
    model = _predict_model(args)
    predictor = VRPSamPredictor(model, args.method, args.gp_prompts, args.gp_threshold)
    predictor.set_references(refs, annotations.prompt_masks(kind, values, args.reference, refs,
                                                            predictor.size))
    written = predict_files(predictor, args.targets, args.output_dir, args.batch_size,
                            args.save_logits, inputs=[*args.reference, *annotation_files],
                            overwrite=args.overwrite)
    print(json.dumps({"shots": len(refs), "method": args.method,
                      "backbone": model.config.backbone,
                      "sam_type": model.config.sam_type, "model": model.origin,
                      "outputs": written}))
    return 0


def predict_video(args: argparse.Namespace) -> int:
    from vrp_sam_jax.storage.image_io import read_image
    from vrp_sam_jax.storage.outputs import output_dir
    from vrp_sam_jax.transforms import annotations
    from vrp_sam_jax.video import VRPSamVideoPredictor, check_video_outputs, segment_video

    kind, values = _annotation(args)
    refs = [read_image(p) for p in args.reference]
    output_dir(args.output_dir, create=False)
    check_video_outputs(args.output_dir, not args.no_overlay, args.overwrite)
    model = options.load_model(args, args.compute_dtype)  # --vrp-checkpoint is required
    tracker = VRPSamVideoPredictor(model, reprompt=args.reprompt)
    tracker.set_references(refs, annotations.prompt_masks(kind, values, args.reference, refs,
                                                          tracker.images.size))
    summary = segment_video(tracker, args.video, args.output_dir, not args.no_overlay,
                            args.fps, args.overwrite)
    print(json.dumps({"shots": len(refs), "sam_type": model.config.sam_type,
                      "model": model.origin, "video": args.video, **summary}))
    return 0


def export(args: argparse.Namespace) -> int:
    from vrp_sam_jax import model_io

    if args.format == "release":  # the release's file holds no SAM: none is read for it
        weights = model_io.release_weights(args.source, which=args.which,
                                           sam=args.sam_checkpoint, sam_type=args.sam_type,
                                           backbone=args.backbone)
        out = model_io.export_release(weights, args.output)
        print(json.dumps({"output": os.path.abspath(out), "format": args.format,
                          "backbone": weights.backbone}))
        return 0
    model = options.load_model(args)
    out = model_io.export(model, args.output, format=args.format,
                          keep_sam_separate=args.keep_sam_separate)
    print(json.dumps({"output": os.path.abspath(out), "format": args.format,
                      "model": model.origin}))
    return 0


def convert_vrp(args: argparse.Namespace) -> int:
    from vrp_sam_jax.models import count_params
    from vrp_sam_jax.weights import directory, release

    weights = release.read_release(args.checkpoint, args.backbone)
    out = directory.write_directory(args.output, weights, 512,
                                    {"backbone": str(args.checkpoint),
                                     "encoder": str(args.checkpoint)})
    print(json.dumps({"backbone": weights.backbone, "output": str(out),
                      "encoder_parameters": count_params(weights.params["encoder"])}))
    return 0


def convert_backbone(args: argparse.Namespace) -> int:
    from vrp_sam_jax.weights.backbones import load_backbone, save_backbone

    name, params = load_backbone(args.checkpoint, args.backbone)
    out = save_backbone(name, params, args.output)
    print(json.dumps({"backbone": name, "output": str(out)}))
    return 0


def summary(args: argparse.Namespace) -> int:
    from vrp_sam_jax.models import VRPSamConfig
    from vrp_sam_jax.models import summary as count

    info = count(VRPSamConfig(backbone=args.backbone, sam_type=args.sam_type))
    for key, value in info.items():
        print(f"{key:>16}: {value:,}" if isinstance(value, int) else f"{key:>16}: {value}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment targets like the annotated reference(s)")
    options.add_model_source(p, "--vrp-checkpoint", required=False)
    options.add_gp_sam(p)
    _add_references(p)
    p.add_argument("targets", nargs="+", help="target images")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--save-logits", action="store_true",
                   help="also write the model-grid logits as NAME_logits.npy")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs already in --output-dir (an input never is)")
    p.add_argument("--batch-size", type=options.positive_int, default=8,
                   help="targets per device call (one compiled program for all sizes)")
    p.add_argument("--compute-dtype", choices=names.COMPUTE_DTYPES, default="float32",
                   help="compute dtype of the frozen backbone and SAM image encoder")
    options.add_compile_cache(p)
    p.set_defaults(func=predict)

    p = sub.add_parser("predict-video", help="follow the annotated reference's object "
                                             "through a video (VRP-SAM on SAM 2)")
    options.add_model_source(p, "--vrp-checkpoint")
    _add_references(p)
    p.add_argument("video", help="a video file (the video extra) or a folder of frames "
                                 "(00000.jpg, ...; sorted by number, else by name)")
    p.add_argument("--output-dir", required=True,
                   help="gets masks/<frame>.png and overlay.mp4")
    p.add_argument("--reprompt", action="store_true",
                   help="where the tracked object is lost, ask the reference again")
    p.add_argument("--no-overlay", action="store_true", help="write the masks only")
    p.add_argument("--fps", type=float, default=None,
                   help="the overlay video's frame rate (default: the video's, or 24)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs already in --output-dir")
    p.add_argument("--compute-dtype", choices=names.COMPUTE_DTYPES, default="float32",
                   help="compute dtype of the reference's backbone and SAM 2 image encoder")
    options.add_compile_cache(p)
    p.set_defaults(func=predict_video)

    p = sub.add_parser("export", help="any model source -> a self-contained converted "
                                      "directory, or the release's best_model.pt")
    options.add_model_source(p)
    p.add_argument("--output", required=True,
                   help="directory to write (release: the .pt file, or DIR/best_model.pt)")
    p.add_argument("--format", choices=names.EXPORT_FORMATS, default="jax",
                   help="jax: our directory, no PyTorch needed; release: best_model.pt")
    p.add_argument("--keep-sam-separate", action="store_true",
                   help="point to the official SAM file (path and SHA-256) instead of "
                        "bundling SAM's weights")
    p.set_defaults(func=export)

    p = sub.add_parser("convert-vrp", help="the release's best_model.pt -> our directory "
                                           "(without SAM; `export` bundles it)")
    p.add_argument("--checkpoint", required=True, help="VRP-SAM best_model.pt")
    p.add_argument("--backbone", choices=names.BACKBONES, default=None,
                   help="checked against the file; inferred when omitted")
    p.add_argument("--output", required=True, help="directory to write")
    p.set_defaults(func=convert_vrp)

    p = sub.add_parser("convert-backbone",
                       help="PSPNet resnet{50,101}_v2.pth, torchvision vgg16_bn or DINOv2's "
                            "dinov2_vit{s,b,l}14_pretrain.pth -> directory")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--backbone", choices=names.BACKBONES, default=None)
    p.add_argument("--output", required=True, help="directory to write")
    p.set_defaults(func=convert_backbone)

    p = sub.add_parser("summary", help="parameter counts of a VRP-SAM architecture")
    p.add_argument("--backbone", choices=names.BACKBONES, default="resnet50")
    p.add_argument("--sam-type", choices=names.SAM_MODEL_TYPES, default="vit_h")
    p.set_defaults(func=summary)


def _add_references(p: argparse.ArgumentParser) -> None:
    """The reference images and exactly one kind of annotation of them (`_annotation`)."""
    p.add_argument("--reference", action="append", required=True,
                   help="reference image (repeat for k-shot)")
    p.add_argument("--reference-mask", action="append", default=[],
                   help="mask PNG of a reference (non-zero = object), one per --reference")
    p.add_argument("--reference-box", type=options.boxes, action="append", default=[],
                   help="x0,y0,x1,y1[;x0,y0,x1,y1] in reference pixels, one per --reference")
    p.add_argument("--reference-points", type=options.points, action="append", default=[],
                   help="x,y[;x,y...] in reference pixels, one per --reference")
    p.add_argument("--reference-scribble", action="append", default=[],
                   help="scribble PNG (non-zero = drawn), one per --reference")
