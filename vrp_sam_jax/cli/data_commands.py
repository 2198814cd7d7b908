"""Data: `episodes`, `prepare-coco`, `pack`."""

from __future__ import annotations

import argparse
import json

from vrp_sam_jax import names
from vrp_sam_jax.cli import options


def episodes(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data import protocols
    from vrp_sam_jax.errors import InputError

    present = None
    if args.data_root:
        from vrp_sam_jax.data.roots import make_source

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


def prepare_coco(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data.coco_masks import prepare_coco as prepare

    for summary in prepare(args.coco_root, args.splits, progress=not args.quiet):
        print(json.dumps(summary))
    return 0


def pack(args: argparse.Namespace) -> int:
    from vrp_sam_jax.data.packed import pack as run

    index = run(args.benchmark, args.data_root, args.output)
    print(json.dumps({"benchmark": index["benchmark"], "images": len(index["names"]),
                      "output": args.output}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("episodes", help="print a benchmark fold's evaluation episodes")
    p.add_argument("--benchmark", choices=names.BENCHMARKS, required=True)
    p.add_argument("--fold", type=int, default=0, help="0-3 (ignored for fss)")
    p.add_argument("--shots", type=options.positive_int, default=1)
    p.add_argument("--protocol", default="hsnet", choices=names.PROTOCOLS,
                   help=f"episode sampler: HSNet's (seed {names.HSNET_SEED}) or the VRP-SAM "
                        f"release's (seed {names.VRP_SEED})")
    p.add_argument("--data-root", default=None,
                   help="dataset root: the vrp PASCAL sampler then reads each query's classes "
                        "from its mask, as the release does (default: from the split lists)")
    p.add_argument("--num", type=options.positive_int, default=None,
                   help="number of episodes (default 1000; fss: every test image once)")
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

    p = sub.add_parser("pack", help="a dataset's folder layout as ArrayRecord shards (few large "
                                    "files for buckets and network filesystems)")
    p.add_argument("--benchmark", choices=names.PACKABLE_BENCHMARKS, required=True)
    p.add_argument("--data-root", required=True, help="the folder layout (as data.root)")
    p.add_argument("--output", required=True,
                   help="new directory; point data.root at it to train or evaluate from it")
    p.set_defaults(func=pack)
