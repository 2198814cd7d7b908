"""tools/launch.py: the TPU pod, GPU host and SLURM recipes of docs/LAUNCH.md print commands
that `vrp-sam` accepts, and the SLURM recipe writes and submits its batch script."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vrp_sam_jax.cli.entry import parse
from vrp_sam_jax.config import load_config

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "tools" / "launch.py"


def _launch(*args: str, env: dict | None = None, cwd: Path = REPO) -> list[str]:
    result = subprocess.run([sys.executable, str(LAUNCH), *args], capture_output=True,
                            text=True, cwd=cwd, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _train_args(command: str):
    """The `vrp-sam train` inside a printed command line, parsed by the real parser."""
    words = shlex.split(command)
    start = words.index("vrp-sam")
    args = parse(words[start + 1:])
    assert args.command == "train"
    load_config(args.config, args.overrides)  # the config and its overrides are valid
    return words[:start], args


def test_tpu_pod_dry_run():
    lines = _launch("tpu-pod", "--name", "vrp", "--zone", "us-central2-b", "--bucket", "bkt",
                    "--config", "pascal:resnet50,box", "--workdir", "/gcs/runs/f1",
                    "--dry-run", "--", "--config.data.fold=1")
    assert [shlex.split(x)[4] for x in lines] == ["create", "scp", "ssh", "ssh", "ssh"]
    assert all("--worker=all" in x for x in lines[1:])
    assert "--accelerator-type=v4-32" in lines[0]
    assert "gcsfuse --implicit-dirs bkt /gcs" in shlex.split(lines[3])[-1]
    remote = shlex.split(lines[4])[-1]  # the command every worker runs
    assert remote.startswith("cd ~/vrp-sam-jax && ")
    _, args = _train_args(remote.split("&& ", 1)[1])
    assert args.distributed and args.workdir == "/gcs/runs/f1"
    assert args.overrides == ["--config.data.fold=1"] and args.process_id is None
    existing = _launch("tpu-pod", "--name", "vrp", "--zone", "z", "--bucket", "b", "--config",
                       "pascal", "--workdir", "/gcs/r", "--existing", "--dry-run")
    assert len(existing) == 4 and " create " not in existing[0]


def test_gpu_host_dry_run():
    (single,) = _launch("gpu-host", "--config", "pascal", "--workdir", "runs/f0", "--dry-run")
    prefix, args = _train_args(single)
    assert prefix == [] and not args.distributed and args.num_processes is None
    lines = _launch("gpu-host", "--gpus", "4", "--process-per-gpu", "--port", "9000",
                    "--config", "coco", "--workdir", "runs/c0", "--dry-run")
    assert len(lines) == 4
    for i, line in enumerate(lines):
        prefix, args = _train_args(line)
        assert prefix == ["env", f"CUDA_VISIBLE_DEVICES={i}"]
        assert (args.coordinator_address, args.num_processes, args.process_id) == (
            "127.0.0.1:9000", 4, i)


@pytest.mark.parametrize("per_gpu, tasks", [(False, 1), (True, 8)])
def test_slurm_dry_run(per_gpu, tasks):
    lines = _launch("slurm", "--nodes", "2", "--gpus-per-node", "8", "--partition", "gpu",
                    "--config", "coco:resnet50,mask", "--workdir", "/shared/runs/c0",
                    *(["--process-per-gpu"] if per_gpu else []), "--dry-run")
    script = "\n".join(lines)
    assert "#SBATCH --nodes=2" in script and f"#SBATCH --ntasks-per-node={tasks}" in script
    assert ("#SBATCH --gpus-per-task=1" in script) == per_gpu
    assert ("#SBATCH --gpus-per-node=8" in script) == (not per_gpu)
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --requeue" in script
    (srun,) = [x for x in lines if x.startswith("srun ")]
    prefix, args = _train_args(srun)
    assert prefix == ["srun"] and args.distributed and args.workdir == "/shared/runs/c0"
    assert lines[-1] == "sbatch vrp_sam_train.sbatch"


def test_slurm_writes_and_submits_the_script(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"  # a stand-in recording what it was given
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'submitted'}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    script = tmp_path / "job.sbatch"
    _launch("slurm", "--config", "pascal", "--workdir", "/shared/r", "--script", str(script),
            env=env)
    assert (tmp_path / "submitted").read_text().strip() == str(script)
    dry = _launch("slurm", "--config", "pascal", "--workdir", "/shared/r", "--script",
                  str(script), "--dry-run")
    assert script.read_text() == "\n".join(dry[1:-1])  # the printed script is the file


def test_launch_md_commands_run():
    """Every `tools/launch.py` command in docs/LAUNCH.md dry-runs, and every `vrp-sam train`
    there parses."""
    text = (REPO / "docs" / "LAUNCH.md").read_text()
    blocks = re.findall(r"```\n(.*?)```", text, re.S)
    commands = [" ".join(line.strip().rstrip("\\") for line in block.splitlines())
                for block in blocks]
    launches = [c for c in commands if c.startswith("python tools/launch.py")]
    assert len(launches) == 2
    for command in launches:
        words = shlex.split(command)[2:]
        if "--dry-run" not in words:
            words.insert(words.index("--") if "--" in words else len(words), "--dry-run")
        assert _launch(*words)
    trains = [c for c in commands if c.startswith("vrp-sam train")]
    assert trains
    for command in trains:
        _train_args(command)
