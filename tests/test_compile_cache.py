"""The test session's persistent compilation cache (tests/conftest.py) reaches subprocesses:
a program compiled in one process is read, not compiled, in the next."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

# A program of its own for each run of this test (the salt is a constant in its HLO), so the
# first process always compiles it, even with a developer's long-lived cache directory.
PROGRAM = """
import json, sys
import jax, jax.numpy as jnp

events = {}
jax.monitoring.register_event_listener(
    lambda event, **_: events.__setitem__(event, events.get(event, 0) + 1))

def salted_program(x):
    for _ in range(8):
        x = jnp.tanh(x @ x.T + float(sys.argv[1]))
    return x

jax.jit(salted_program).lower(jax.ShapeDtypeStruct((96, 96), jnp.float32)).compile()
print(json.dumps({"hits": events.get("/jax/compilation_cache/cache_hits", 0),
                  "misses": events.get("/jax/compilation_cache/cache_misses", 0)}))
"""


def _compile_in_a_process(salt: float) -> dict:
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(salt)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_program_compiled_in_one_process_is_read_in_the_next():
    directory = Path(os.environ["JAX_COMPILATION_CACHE_DIR"])

    def entries() -> set[Path]:
        # Only this program's: the other xdist worker writes its own programs here meanwhile.
        return set(directory.glob("jit_salted_program-*"))

    salt = uuid.uuid4().int % 10**6 / 10**6
    before = entries()
    first = _compile_in_a_process(salt)
    written = entries() - before
    second = _compile_in_a_process(salt)
    assert (first["hits"], first["misses"]) == (0, 1), first
    assert len(written) == 1, written
    assert (second["hits"], second["misses"]) == (1, 0), second
    assert entries() == before | written  # nothing new written


def test_a_second_evaluation_in_a_fresh_process_compiles_nothing(toy_run, tmp_path):
    """`--compile-cache DIR` (with the command's own thresholds, not the session's): the first
    `vrp-sam evaluate` writes the programs it compiles, the second writes none;
    `--compile-cache none` writes nothing, even where the environment names a cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")}
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "from_the_environment")

    def evaluate(cache: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "vrp_sam_jax.cli", "evaluate", "--checkpoint", str(toy_run),
             "--num-episodes", "8", "--figures", "0", "--output-dir", str(tmp_path / "eval"),
             "--quiet", "--compile-cache", cache], capture_output=True, text=True, env=env,
            timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    cache = tmp_path / "compiled"
    evaluate(str(cache))
    first = sorted(cache.iterdir())
    assert any(p.name.startswith("jit_eval_step-") for p in first), first
    evaluate(str(cache))
    assert sorted(cache.iterdir()) == first
    evaluate("none")
    assert not (tmp_path / "from_the_environment").exists()
