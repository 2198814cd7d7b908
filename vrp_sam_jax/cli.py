"""The `vrp-sam` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sam_port.torch_pickle import CheckpointError
from vrp_sam_jax.image_io import InputError

SAM_TYPES = ["vit_b", "vit_l", "vit_h", "tiny"]


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


def _cmd_demo(args: argparse.Namespace) -> int:
    from vrp_sam_jax import sam_demo

    return sam_demo.main(args.model_type, args.sam_checkpoint, args.output_dir)


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

    p = sub.add_parser("demo", help="embedded demo: no download, no dataset")
    p.add_argument("--model-type", choices=SAM_TYPES, default=None,
                   help="random weights of this type (default tiny), or the checkpoint's type")
    p.add_argument("--sam-checkpoint", default=None,
                   help="use real SAM weights (.pth or converted directory)")
    p.add_argument("--output-dir", default="demo_out")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, InputError, FileNotFoundError) as e:
        print(f"vrp-sam: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
