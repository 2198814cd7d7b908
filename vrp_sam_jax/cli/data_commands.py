"""Data: `episodes`, `prepare-coco`, `prepare-isic`, `prepare-lvis`, `fetch-data`, `pack`."""

from __future__ import annotations

import argparse
import json

from vrp_sam_jax import names
from vrp_sam_jax.cli import options


def episodes(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data import protocols
    from vrp_sam_jax.errors import InputError

    protocol = args.protocol or protocols.default_protocol(args.benchmark)
    present = classwise = None
    if args.data_root:
        from vrp_sam_jax.data.roots import make_source

        source = make_source(args.benchmark, args.data_root, args.shots)
        classwise = protocols.dataset_lists(source, protocol)
        present = source.present_classes if classwise is None else None
    try:
        eps = protocols.episodes(args.benchmark, args.fold, args.shots, protocol, args.num,
                                 present, classwise)
    except ValueError as e:
        raise InputError(str(e)) from e
    if args.json:
        print(json.dumps([e.to_dict() for e in eps]))
    else:
        for i, e in enumerate(eps):
            print(f"{i}\t{e.class0}\t{e.query}\t{' '.join(e.supports)}")
    return 0


def prepare_coco(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data.coco_masks import prepare_coco as prepare

    for summary in prepare(args.coco_root, args.splits, progress=not args.quiet):
        print(json.dumps(summary))
    return 0


def prepare_isic(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data.isic_classes import prepare_isic as prepare

    print(json.dumps(prepare(args.isic_root, progress=not args.quiet)))
    return 0


def prepare_lvis(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data.lvis import prepare_lvis as prepare

    files = [(split, path) for split, path in (("train", args.train_json),
                                               ("val", args.val_json)) if path]
    if not files:
        from vrp_sam_jax.errors import InputError

        raise InputError("give --train-json and/or --val-json (LVIS v1 instances files)")
    for summary in prepare(files, args.output):
        print(json.dumps(summary))
    return 0


def fetch_data(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data.fetch import fetch

    print(json.dumps(fetch(args.dataset, args.data_root, args.mirror, progress=not args.quiet)))
    return 0


def pack(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data.packed import pack as run

    index = run(args.benchmark, args.data_root, args.output)
    print(json.dumps({"benchmark": index["benchmark"], "images": len(index["names"]),
                      "output": args.output}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "episodes", help="print a benchmark fold's evaluation episodes",
        description="A benchmark's evaluation episodes as the original samplers draw them. "
                    "'query' and 'supports' name images as the dataset's reader does: PASCAL "
                    "by VOC name, COCO by 'val2014/<file>', FSS-1000 by 'category/n.jpg' "
                    "(hsnet) or the stem 'category/n' (patnet), LVIS, Deepglobe, ISIC and the "
                    "chest X-rays by the image's file stem (for the X-rays the image's, not "
                    "the mask's). 'class0' is the original's class number, 0-based: PASCAL "
                    "0-19, COCO 0-79, FSS-1000 760 + the category's index in the test list "
                    "(sorted under patnet, as PATNet sorts it), Deepglobe 0-5, ISIC 0-2, lung "
                    "0, LVIS-92i the index into Matcher's list of eligible categories (fold f "
                    "tests f, f+10, f+20, ...).")
    p.add_argument("--benchmark", choices=names.BENCHMARKS, required=True)
    p.add_argument("--fold", type=int, default=0,
                   help="0-3 (lvis: 0-9; ignored for fss, deepglobe, isic, lung)")
    p.add_argument("--shots", type=options.positive_int, default=1)
    p.add_argument("--protocol", default=None, choices=names.PROTOCOLS,
                   help=f"episode sampler: HSNet's (seed {names.HSNET_SEED}), the VRP-SAM "
                        f"release's (seed {names.VRP_SEED}) or PATNet's cross-domain one "
                        f"(seed {names.PATNET_SEED}; {', '.join(names.PATNET_BENCHMARKS)}) or "
                        f"Matcher's (seed {names.MATCHER_SEED}; lvis); default: patnet for "
                        "deepglobe, isic, lung, matcher for lvis, else hsnet")
    p.add_argument("--data-root", default=None,
                   help="dataset root: the vrp PASCAL sampler then reads each query's classes "
                        "from its mask, as the release does (default: from the split lists); "
                        "patnet and matcher list the images there, as PATNet and Matcher do "
                        "(needed for deepglobe, isic, lung, lvis; fss defaults to the 10 "
                        "standard images per category)")
    p.add_argument("--num", type=options.positive_int, default=None,
                   help="number of episodes (default 1000; patnet 600; matcher 2300; fss: "
                        "every test image once)")
    p.add_argument("--json", action="store_true", help="JSON list instead of lines")
    p.set_defaults(func=episodes)

    p = sub.add_parser("prepare-coco",
                       help="build COCO-20i per-image class masks from instances_*.json")
    p.add_argument("--coco-root", required=True,
                   help="folder with annotations/instances_{train,val}2014.json; masks go to "
                        "annotations/{train2014,val2014}/")
    p.add_argument("--splits", nargs="+", default=["train2014", "val2014"],
                   choices=["train2014", "val2014"])
    options.add_quiet(p)
    p.set_defaults(func=prepare_coco)

    p = sub.add_parser("prepare-isic",
                       help="sort ISIC2018 Task 1's training images into PATNet's class "
                            "folders 1-3 (melanoma, nevus, seborrheic keratosis)")
    p.add_argument("--isic-root", required=True,
                   help="folder with ISIC2018_Task1-2_Training_Input/ (or with ISIC/ holding "
                        "it); images are hard-linked (or copied) into its 1/, 2/, 3/")
    options.add_quiet(p)
    p.set_defaults(func=prepare_isic)

    p = sub.add_parser("prepare-lvis",
                       help="Matcher's LVIS-92i annotation files (lvis_train.pkl, lvis_val.pkl) "
                            "from the LVIS v1 instances JSON")
    p.add_argument("--train-json", default=None, help="lvis_v1_train.json")
    p.add_argument("--val-json", default=None, help="lvis_v1_val.json")
    p.add_argument("--output", required=True,
                   help="the LVIS folder (beside coco/train2017, coco/val2017); the data root "
                        "is it or its parent")
    p.set_defaults(func=prepare_lvis)

    p = sub.add_parser("fetch-data",
                       help="download and prepare a public benchmark: lvis (COCO 2017 images, "
                            "LVIS v1, Matcher's files) or isic (ISIC 2018 Task 1, PATNet's "
                            "class folders)")
    p.add_argument("--dataset", choices=("lvis", "isic"), required=True)
    p.add_argument("--data-root", required=True,
                   help="the data root (LVIS/ or ISIC/ are made in it); resumes and skips "
                        "what is there")
    p.add_argument("--mirror", default=None,
                   help="a URL whose folder holds copies of the files (same names)")
    options.add_quiet(p)
    p.set_defaults(func=fetch_data)

    p = sub.add_parser("pack", help="a dataset's folder layout as ArrayRecord shards (few large "
                                    "files for buckets and network filesystems)")
    p.add_argument("--benchmark", choices=names.PACKABLE_BENCHMARKS, required=True)
    p.add_argument("--data-root", required=True, help="the folder layout (as data.root)")
    p.add_argument("--output", required=True,
                   help="new directory; point data.root at it to train or evaluate from it")
    p.set_defaults(func=pack)
