"""JAX's persistent compilation cache for the commands that compile the model (`train`,
`evaluate`, `predict`, `app`, `demo`): a resumed run, a second evaluation of the same model or
a reconnected notebook reads the programs it compiled before instead of compiling them again
(minutes for ViT-H on a TPU, tens of seconds for the toy model on a CPU).

JAX keys each entry by the program, the devices and the compiler's version and flags, so one
directory serves several models, meshes and machines; a cache in a bucket (`gs://...`) serves
every host of a slice.
"""

from __future__ import annotations

import os

from vrp_sam_jax.storage.paths import absolute

OFF = "none"


def default_directory() -> str:
    """`$JAX_COMPILATION_CACHE_DIR` when set, otherwise the user's cache
    (`$XDG_CACHE_HOME/vrp-sam/jax`, by default `~/.cache/vrp-sam/jax`)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vrp-sam", "jax")


def use(directory: str | None) -> str | None:
    """Turn the cache on in `directory` (None: `default_directory()`), or off (`"none"`),
    before anything compiles. Returns the directory used, None when off.

    Every program is cached, however fast it compiled (JAX's default keeps only those over a
    second, which leaves most of a CPU run and the small programs of an evaluation compiling
    again), unless `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS` says otherwise."""
    import jax

    if directory == OFF:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    where = os.fspath(absolute(directory or default_directory()))
    jax.config.update("jax_compilation_cache_dir", where)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return where
