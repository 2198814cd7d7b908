"""Runs of several `vrp-sam` processes, as on the hosts of a TPU pod slice: each process with
its own fake CPU devices, together through JAX's multi-controller runtime on loopback (gloo
collectives). Shared by test_multiprocess.py, test_buckets.py and the session's
`two_process_run` (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The toy training every multi-process test runs: 2 epochs of 2 steps at 64 pixels, a
# checkpoint after each step, validation after each epoch, the VRP encoder trained (so SAM's
# target embeddings may come from the on-disk cache).
TRAIN = ["--config", str(REPO / "configs/toy.py"), "--quiet", "--config.model.image_size=64",
         "--config.train.epochs=2", "--config.train.steps_per_epoch=2",
         "--config.checkpoint.every_steps=1", "--config.log.val_every_epochs=1",
         "--config.data.val_episodes=8", "--config.log.every_steps=1",
         "--config.data.workers=1", "--config.train.trainable=encoder"]
LAST_STEP = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cache(directory: Path | str, shared: bool = True) -> list[str]:
    """SAM embeddings cached in `directory`: one directory for all processes (`shared`), or
    each process embedding every image itself."""
    return ["--config.cache.embeddings=True", f"--config.cache.dir={directory}",
            f"--config.cache.shared={shared}"]


def launch(args: list[str], logs: Path, processes: int, devices: int,
           env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """The same `vrp-sam` command in `processes` processes of `devices` CPU devices each (in
    `env`, os.environ's by default); each one's stdout and stderr in `logs`."""
    logs.mkdir(parents=True, exist_ok=True)
    env = {**(os.environ if env is None else env), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    port = free_port()
    procs = []
    for i in range(processes):
        distributed = (["--coordinator-address", f"127.0.0.1:{port}", "--num-processes",
                        str(processes), "--process-id", str(i)] if processes > 1 else [])
        with open(logs / f"p{i}.out", "w") as out, open(logs / f"p{i}.err", "w") as err:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "vrp_sam_jax.cli", *args, *distributed], cwd=REPO,
                stdout=out, stderr=err, env=env))
    return procs


def log_excerpt(path: Path, size: int = 2500) -> str:
    """What a failed process's log says: from its first Python traceback or error line (the
    cause; a process that dies takes the others down with a runtime "Shutdown" barrier error
    whose C++ stack would otherwise fill the tail), and its last lines."""
    text = path.read_text()
    starts = [at for at in (text.find("Traceback (most recent call last)"),
                            text.find("Error: "), text.find("error: ")) if at >= 0]
    first = min(starts, default=len(text))
    head = text[first:first + size]
    return head if first + size >= len(text) else f"{head}\n[...]\n{text[-size:]}"


def finish(procs: list[subprocess.Popen], logs: Path, timeout: float = 900) -> list[str]:
    """Wait for every process; on a failure or a hang stop all and show the logs. Returns
    each process's stdout."""
    deadline = time.time() + timeout
    # one failed process leaves the others waiting in a collective: stop at the first failure
    while (time.time() < deadline and any(p.poll() is None for p in procs)
           and not any(p.poll() for p in procs)):
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    codes = [p.returncode for p in procs]
    errs = [log_excerpt(logs / f"p{i}.err") for i in range(len(procs))]
    assert codes == [0] * len(procs), (codes, errs)
    return [(logs / f"p{i}.out").read_text() for i in range(len(procs))]


def results(outs: list[str]) -> list[dict]:
    """Each process's result line (the last line of its stdout)."""
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def train_two_processes(root: Path) -> Path:
    """The toy training (TRAIN) in 2 processes x 4 devices with one shared embedding cache,
    under `root`; checks what both processes report and that each embedded its half of the
    images. Returns the work directory."""
    first, second = results(finish(launch(["train", "--workdir", str(root / "run"), *TRAIN,
                                           *cache(root / "cache")], root / "logs", 2, 4),
                                   root / "logs"))
    assert first["steps"] == second["steps"] == LAST_STEP
    assert first["miou"] == second["miou"]  # validation reduced over processes
    parts = sorted(p.name for p in (root / "cache").glob("*/part-*.json"))
    assert [p[-7:] for p in parts] == ["p0.json", "p1.json"]  # each embedded its half
    return root / "run"
