"""The sizing table of docs/LAUNCH.md: `vrp-sam plan` over the paper's configs and TPU slices.

    python tools/sizing_table.py --out sizing/            # compile what is missing, print table
    python tools/sizing_table.py --out sizing/ --table    # print the table of what is there

Each row is one `vrp-sam plan ... --json` run in its own process, its JSON kept under `--out`
(`<topology>_<mesh>_<backbone>_<shots>shot.json`), so a stopped run resumes where it was and
rows can be compiled on several hosts. Rows are compiled in the order of `ROWS` (the most
asked first); ViT-H steps take minutes each to compile on a small host.

What is compiled once for several rows, and why that is exact:
- PASCAL-5i and COCO-20i runs with the same backbone, condition and shots have the same model
  config, batch and mesh, hence the same programs (checked below); only the number of training
  steps differs, so the COCO estimate uses the PASCAL row's FLOPs.
- The embedding pre-pass (`cache`) runs SAM's image encoder alone: one row per slice and mesh.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from vrp_sam_jax.config import load_config, vrp_sam_config
from vrp_sam_jax.storage.files import write_text_atomic
from vrp_sam_jax.training import plan as planner

BACKBONES = ("resnet50", "vgg16", "dinov2_vitl14")
# (topology, model axis): the TPU slices the issue asks for, data-only and with SAM split in two,
# and a host of 8 H100s
SLICES = (("v5e:2x2", 1), ("v5e:2x2", 2), ("v4:2x2x2", 1), ("v4:2x2x2", 2), ("v5e:4x4", 1),
          ("v5e:4x4", 2), ("h100:8", 1))
# The paper's global batch is 8; a data axis of 16 chips needs 16.
PAPER_BATCH = 8
# (topology, model, backbone, shots), most asked first: the other backbones and 5 shots on the
# smallest slice (its resnet50 1-shot row came first, by hand), then the slices for the default
# backbone, then the rest.
ROWS = ([("v5e:2x2", 1, b, 1) for b in BACKBONES[1:]] + [("v5e:2x2", 1, "resnet50", 5)]
        + [(t, m, "resnet50", 1) for t, m in SLICES[1:]]
        + [(t, m, b, s) for t, m in SLICES for b in BACKBONES for s in (1, 5)])
ROWS = list(dict.fromkeys(ROWS))


def overrides(topology: str, model: int, shots: int) -> list[str]:
    devices = {"v5e:2x2": 4, "v4:2x2x2": 8, "v5e:4x4": 16, "h100:8": 8}[topology]
    batch = max(PAPER_BATCH, devices // model)
    return ["cache.embeddings=True", f"train.global_batch={batch}", f"mesh.model={model}",
            f"data.shots={shots}"]


def row_path(out: Path, topology: str, model: int, backbone: str, shots: int) -> Path:
    return out / f"{topology.replace(':', '-')}_model{model}_{backbone}_{shots}shot.json"


def compile_row(out: Path, topology: str, model: int, backbone: str, shots: int,
                steps: str) -> None:
    """One `vrp-sam plan --steps STEPS` in its own process (and `cache` for the slice's first
    row); its JSON written whole when it ends."""
    first_of_slice = next(r for r in ROWS if r[:2] == (topology, model)) == (
        topology, model, backbone, shots)
    steps += ",cache" if first_of_slice else ""
    command = [sys.executable, "-m", "vrp_sam_jax.cli", "plan", "--config",
               f"pascal:{backbone},mask", "--topology", topology, "--json", "--quiet",
               "--steps", steps, *[f"--config.{o}" for o in overrides(topology, model, shots)]]
    print(" ".join(command[2:]), file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{topology} model={model} {backbone} {shots}-shot: "
                         f"{done.stderr.strip().splitlines()[-1:]}")
    target = row_path(out, topology, model, backbone, shots)
    write_text_atomic(target, done.stdout)


def coco_estimate(result: dict, backbone: str, shots: int, topology: str, model: int) -> dict:
    """The COCO-20i run's estimate from the PASCAL row's programs (the same, checked)."""
    extra = overrides(topology, model, shots)
    pascal = load_config(f"pascal:{backbone},mask", extra)
    coco = load_config(f"coco:{backbone},mask", extra)
    if vrp_sam_config(pascal) != vrp_sam_config(coco) or (
            pascal.train.global_batch, pascal.mesh.to_dict(), pascal.cache.to_dict()) != (
            coco.train.global_batch, coco.mesh.to_dict(), coco.cache.to_dict()):
        raise SystemExit(f"pascal and coco {backbone} differ in shapes: compile coco's own row")
    return planner.estimate(coco, result["steps"], planner.CHIPS[result["device_kind"]])


def table(out: Path) -> str:
    gib = planner.GiB
    lines = ["| slice | mesh (data x model) | backbone | shots | global batch | step | peak GiB "
             "| fits | TFLOP per chip | collectives | PASCAL fold at peak, h | COCO fold at "
             "peak, h |", "|" + " --- |" * 12]
    for topology, model, backbone, shots in ROWS:
        path = row_path(out, topology, model, backbone, shots)
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        hours = {"pascal": result["estimate"]["train_seconds_at_peak"],
                 "coco": coco_estimate(result, backbone, shots, topology,
                                       model)["train_seconds_at_peak"]}
        mesh = f"{result['mesh']['data']} x {result['mesh']['model']}"
        for name, s in result["steps"].items():
            kinds = ", ".join(f"{v['count']} {k}" for k, v in sorted(s["collectives"].items()))
            flops = "?" if s["flops_per_chip"] is None else f"{s['flops_per_chip'] / 1e12:.3f}"
            pascal, coco = ((f"{hours[b] / 3600:.2f}" for b in ("pascal", "coco"))
                            if name == "train_cached" else ("", ""))
            lines.append(
                f"| {topology} | {mesh} | {backbone if name != 'cache' else '(SAM only)'} "
                f"| {shots if name != 'cache' else '-'} | {result['global_batch']} | {name} "
                f"| {s['peak_bytes'] / gib:.2f} | {'yes' if s['fits'] else 'NO'} | {flops} "
                f"| {kinds or '-'} | {pascal} | {coco} |")
    return "\n".join(lines)


def parse_row(text: str) -> tuple[str, int, str, int]:
    topology, model, backbone, shots = text.split(",")
    row = (topology, int(model), backbone, int(shots))
    if row not in ROWS:
        raise argparse.ArgumentTypeError(f"{text} is not a row of the table")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the rows' JSON")
    parser.add_argument("--table", action="store_true", help="only print what is there")
    parser.add_argument("--steps", default="train,train_cached,eval",
                        help="the steps a new row compiles (train_cached alone gives the fold "
                             "estimate in minutes; a row keeps the steps it was compiled with)")
    parser.add_argument("--row", action="append", type=parse_row, default=None,
                        metavar="SLICE,MODEL,BACKBONE,SHOTS",
                        help="compile this row of ROWS only (repeatable), e.g. "
                             "v5e:2x2,2,resnet50,1")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        for row in args.row or ROWS:
            if not row_path(args.out, *row).exists():
                compile_row(args.out, *row, args.steps)
    print(table(args.out))


if __name__ == "__main__":
    main()
