"""Launch `vrp-sam train` on a TPU VM pod slice, a GPU host, or a SLURM cluster
(docs/LAUNCH.md). `--dry-run` prints every command (and the SLURM batch script) instead of
running it.

    python tools/launch.py tpu-pod --name vrp --zone us-central2-b --accelerator v4-32 \\
        --bucket my-bucket --config pascal:resnet50,mask --workdir /gcs/runs/pascal_f0 --dry-run
    python tools/launch.py gpu-host --gpus 8 --config pascal --workdir runs/f0 --dry-run
    python tools/launch.py slurm --nodes 2 --gpus-per-node 8 --partition gpu \\
        --config coco --workdir /shared/runs/coco_f0 --dry-run

Everything after `--` is passed to `vrp-sam train` (e.g. `-- --config.data.fold=1`).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

JAX_VERSION = "0.10.2"  # pyproject's pin
REMOTE_REPO = "~/vrp-sam-jax"
PORT = 8476  # the coordinator's port (any free port on process 0's host)


def train_command(args: argparse.Namespace, *distributed: str) -> list[str]:
    """The `vrp-sam train` command every process runs."""
    return ["vrp-sam", "train", "--config", args.config, "--workdir", args.workdir,
            *distributed, "--quiet", *args.extra]


def tpu_pod(args: argparse.Namespace) -> list[list[str]]:
    """Create the slice, copy the repository to every worker, install, mount the bucket where
    the data, the cache and the work directory live, and run the same command everywhere
    (`--distributed`: JAX finds the slice's workers itself)."""
    where = [f"--zone={args.zone}"]
    ssh = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name, *where, "--worker=all",
           "--command"]
    mount = (f"sudo mkdir -p {args.mount} && sudo chown $USER {args.mount} && "
             f"gcsfuse --implicit-dirs {args.bucket} {args.mount}")
    install = (f"cd {REMOTE_REPO} && pip install -e . 'jax[tpu]=={JAX_VERSION}'")
    run = f"cd {REMOTE_REPO} && " + shlex.join(train_command(args, "--distributed"))
    commands = [
        ["gcloud", "compute", "tpus", "tpu-vm", "create", args.name, *where,
         f"--accelerator-type={args.accelerator}", f"--version={args.version}"],
        ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", *where, "--worker=all",
         str(args.repo), f"{args.name}:{REMOTE_REPO}"],
        [*ssh, install],
        [*ssh, mount],
        [*ssh, run],
    ]
    return commands[1:] if args.existing else commands


def gpu_host(args: argparse.Namespace) -> list[list[str]]:
    """One process driving every GPU of the host (the default), or one process per GPU on
    loopback (`--process-per-gpu`), which is how a cluster runs and a way to test it."""
    if not args.process_per_gpu:
        return [train_command(args)]
    commands = []
    for i in range(args.gpus):
        distributed = ("--coordinator-address", f"127.0.0.1:{args.port}", "--num-processes",
                       str(args.gpus), "--process-id", str(i))
        commands.append(["env", f"CUDA_VISIBLE_DEVICES={i}", *train_command(args, *distributed)])
    return commands


def slurm_script(args: argparse.Namespace) -> str:
    """An sbatch script: `srun` starts the tasks, and JAX reads the job's layout (the
    coordinator is the first node, each task's index is its SLURM_PROCID) itself."""
    per_node = args.gpus_per_node if args.process_per_gpu else 1
    gpus = (["#SBATCH --gpus-per-task=1"] if args.process_per_gpu
            else [f"#SBATCH --gpus-per-node={args.gpus_per_node}"])
    lines = ["#!/bin/bash", f"#SBATCH --job-name={args.job_name}",
             f"#SBATCH --nodes={args.nodes}", f"#SBATCH --ntasks-per-node={per_node}", *gpus,
             f"#SBATCH --time={args.time}", "#SBATCH --requeue",
             *([f"#SBATCH --partition={args.partition}"] if args.partition else []),
             f"#SBATCH --output={args.job_name}-%j.log", "",
             "# the work directory is on a filesystem every node sees; a requeued job resumes "
             "from its newest checkpoint",
             f"cd {shlex.quote(str(args.repo))}",
             "srun " + shlex.join(train_command(args, "--distributed")), ""]
    return "\n".join(lines)


def slurm(args: argparse.Namespace) -> list[list[str]]:
    return [["sbatch", str(args.script)]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="target", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, help="as `vrp-sam train --config`")
        p.add_argument("--workdir", required=True,
                       help="the run's directory: on a filesystem every process sees")
        p.add_argument("--dry-run", action="store_true", help="print, do not run")

    p = sub.add_parser("tpu-pod", help="a Cloud TPU VM pod slice (gcloud)")
    common(p)
    p.add_argument("--name", required=True)
    p.add_argument("--zone", required=True)
    p.add_argument("--accelerator", default="v4-32", help="e.g. v4-32, v5litepod-16")
    p.add_argument("--version", default="tpu-ubuntu2204-base", help="TPU VM software version")
    p.add_argument("--bucket", required=True, help="GCS bucket with the data and runs")
    p.add_argument("--mount", default="/gcs", help="where the bucket is mounted on each worker")
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    p.add_argument("--existing", action="store_true", help="the slice exists: do not create")
    p.set_defaults(plan=tpu_pod)

    p = sub.add_parser("gpu-host", help="one host with several GPUs")
    common(p)
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--process-per-gpu", action="store_true")
    p.add_argument("--port", type=int, default=PORT)
    p.set_defaults(plan=gpu_host)

    p = sub.add_parser("slurm", help="a SLURM cluster (sbatch + srun)")
    common(p)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--process-per-gpu", action="store_true",
                   help="one task per GPU (default: one task per node, driving its GPUs)")
    p.add_argument("--partition", default=None)
    p.add_argument("--time", default="24:00:00")
    p.add_argument("--job-name", default="vrp-sam")
    p.add_argument("--script", type=Path, default=Path("vrp_sam_train.sbatch"))
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    p.set_defaults(plan=slurm)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args = _parser().parse_args(argv[:split])
    args.extra = argv[split + 1:]
    commands = args.plan(args)
    script = slurm_script(args) if args.target == "slurm" else None
    if args.dry_run:
        if script is not None:
            print(f"# {args.script}\n{script}")
        for command in commands:
            print(shlex.join(command))
        return 0
    if script is not None:
        args.script.write_text(script)
    if args.target == "gpu-host" and len(commands) > 1:  # the processes run together
        procs = [subprocess.Popen(c) for c in commands]
        return max(p.wait() for p in procs)
    for command in commands:
        print("+", shlex.join(command), flush=True)
        code = subprocess.call(command)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
