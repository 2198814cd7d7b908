"""SAM alone: `convert-sam`, `sam-predict` (SAM and SAM 2), `sam-everything`, `sam-demo`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vrp_sam_jax import names
from vrp_sam_jax.cli import options


def convert_sam(args: argparse.Namespace) -> int:
    import sam_port

    sam = sam_port.load_sam(args.checkpoint, args.model_type)
    out = sam_port.save_sam(sam, args.output)
    print(json.dumps({"model_type": sam.model_type, "output": str(out)}))
    return 0


def sam_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    import sam_port
    from vrp_sam_jax.errors import InputError
    from vrp_sam_jax.storage.image_io import overlay, read_image, write_mask
    from vrp_sam_jax.transforms.conditions import check_point, clip_box

    if not args.point and not args.box:
        raise InputError("give at least one --point or --box")
    image = read_image(args.image)
    try:  # as `predict` refuses them: a point outside the image, a box wholly outside it
        for point in args.point + args.negative_point:
            check_point(point, image.shape[:2])
        if args.box is not None:
            clip_box(args.box, image.shape[:2])  # SAM itself takes the box as given
    except ValueError as e:
        raise InputError(f"{args.image}: {e}") from e
    sam = sam_port.load_sam(args.checkpoint, args.model_type)
    is_sam2 = isinstance(sam, sam_port.LoadedSam2)
    predictor = sam_port.SAM2ImagePredictor(sam) if is_sam2 else sam_port.SamPredictor(sam)
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


# sam-everything's generator options: (flag, type, official default, help)
GENERATOR_OPTIONS = [
    ("points_per_side", int, 32, "points sampled along each side of the image"),
    ("points_per_batch", int, 64, "points run through the decoder at once"),
    ("pred_iou_thresh", float, None, "keep masks whose predicted IoU is above this "
     "(default 0.88 with SAM, 0.8 with SAM 2, as officially)"),
    ("stability_score_thresh", float, 0.95, "keep masks at least this stable"),
    ("stability_score_offset", float, 1.0, "logit offset of the stability score"),
    ("box_nms_thresh", float, 0.7, "box IoU above which duplicate masks are removed"),
    ("crop_n_layers", int, 0, "layers of image crops to run again (layer i: 4**i crops)"),
    ("crop_nms_thresh", float, 0.7, "box NMS threshold between crops"),
    ("crop_overlap_ratio", float, 512 / 1500, "overlap of the crops in the first layer"),
    ("crop_n_points_downscale_factor", int, 1, "points per side shrink by this per layer"),
    ("min_mask_region_area", int, 0, "fill holes and drop islands smaller than this"),
]


def sam_everything(args: argparse.Namespace) -> int:
    import sam_port
    from vrp_sam_jax.errors import InputError
    from vrp_sam_jax.sam.segment_everything import segment_files

    sam = sam_port.load_sam(args.checkpoint, args.model_type)
    options = {name: getattr(args, name) for name, *_ in GENERATOR_OPTIONS
               if getattr(args, name) is not None}
    if isinstance(sam, sam_port.LoadedSam2):
        generator_class = sam_port.SAM2AutomaticMaskGenerator
        options["use_m2m"] = args.use_m2m
    elif args.use_m2m:
        raise InputError(f"{args.checkpoint}: --use-m2m is SAM 2's refinement; this is a SAM")
    else:
        generator_class = sam_port.SamAutomaticMaskGenerator
    try:
        generator = generator_class(sam, output_mode="uncompressed_rle",
                                    progress=not args.quiet, **options)
    except ValueError as e:
        raise InputError(f"sam-everything: {e}") from e
    for line in segment_files(generator, args.image, args.output_dir, args.format):
        print(json.dumps(line))
    return 0


def sam_demo(args: argparse.Namespace) -> int:
    from vrp_sam_jax.sam import demo as demo

    return demo.main(args.model_type, args.sam_checkpoint, args.output_dir)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert-sam", help="official SAM .pth or SAM 2 .pt -> our orbax "
                                           "directory")
    p.add_argument("--model-type", choices=names.SAM_MODEL_TYPES, default=None,
                   help="checked against the file; inferred when omitted")
    p.add_argument("--checkpoint", required=True,
                   help="sam_vit_{b,l,h}_*.pth, sam2.1_hiera_*.pt or sam2_hiera_*.pt")
    p.add_argument("--output", required=True, help="directory to write")
    p.set_defaults(func=convert_sam)

    p = sub.add_parser("sam-predict", help="segment one image with SAM or SAM 2 from points "
                                           "and/or a box")
    p.add_argument("--checkpoint", required=True,
                   help="official SAM .pth or SAM 2 .pt, or a converted directory")
    p.add_argument("--model-type", choices=names.SAM_MODEL_TYPES, default=None)
    p.add_argument("--image", required=True)
    p.add_argument("--point", type=options.point, action="append", default=[],
                   help="foreground point x,y in pixels (repeatable)")
    p.add_argument("--negative-point", type=options.point, action="append", default=[],
                   help="background point x,y (repeatable)")
    p.add_argument("--box", type=options.box, default=None, help="x0,y0,x1,y1 in pixels")
    p.add_argument("--multimask", action="store_true",
                   help="predict 3 masks and keep the best-scored (good for a single point)")
    p.add_argument("--output", required=True, help="mask PNG to write")
    p.set_defaults(func=sam_predict)

    p = sub.add_parser("sam-everything", help="segment everything in images with SAM's or "
                                              "SAM 2's automatic mask generator")
    p.add_argument("--checkpoint", required=True,
                   help="official SAM .pth or SAM 2 .pt, or a converted directory")
    p.add_argument("--model-type", choices=names.SAM_MODEL_TYPES, default=None)
    p.add_argument("--image", required=True, action="append",
                   help="image file (repeatable)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--format", choices=("png", "coco-rle"), default="png",
                   help="png: NAME/{0,1,...}.png + metadata.csv + overlay.png; coco-rle: "
                        "NAME.json + NAME_overlay.png")
    for name, kind, default, text in GENERATOR_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=default,
                       help=text if default is None else f"{text} (default {default:.4g})")
    p.add_argument("--use-m2m", action="store_true",
                   help="SAM 2: refine each mask once with itself as the mask prompt")
    options.add_quiet(p)
    p.set_defaults(func=sam_everything)

    p = sub.add_parser("sam-demo", help="SAM alone: checkpoint round trip and one point prompt "
                                        "on a generated image")
    p.add_argument("--model-type", choices=names.SAM_TYPES, default=None,
                   help="random weights of this type (default tiny), or the checkpoint's type")
    p.add_argument("--sam-checkpoint", default=None,
                   help="use real SAM weights (.pth or converted directory)")
    p.add_argument("--output-dir", default="sam_demo_out")
    p.set_defaults(func=sam_demo)
