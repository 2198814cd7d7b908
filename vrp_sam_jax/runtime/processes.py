"""JAX's multi-controller runtime: starting it from the command line, and which process writes.

One process runs per host (TPU VM worker) or per accelerator (SLURM task, GPU). Every process
runs the same command; each loads its rows of the global batch (`sharding.to_global`), all of
them save the orbax checkpoints together, and only the first (`is_writer`) writes logs,
figures and reports.
"""

from __future__ import annotations

import jax
import numpy as np

from vrp_sam_jax.errors import ConfigError


def _check_address(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--coordinator-address {address!r}: expected HOST:PORT "
                          "(e.g. 10.0.0.2:8476), the first process's address")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """`jax.distributed.initialize` with what is given; what is not is auto-detected by JAX
    (TPU pods, SLURM, Open MPI). CPU collectives go over gloo, so CPU processes (tests, a
    cluster without accelerators) can run one program together."""
    if coordinator_address is not None:
        _check_address(coordinator_address)
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"--num-processes {num_processes}: must be at least 1")
    if process_id is not None and (process_id < 0 or (num_processes is not None
                                                      and process_id >= num_processes)):
        raise ConfigError(f"--process-id {process_id}: must be in 0..{(num_processes or 1) - 1}"
                          f" (--num-processes {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    except (ValueError, RuntimeError) as e:  # nothing to auto-detect, coordinator unreachable
        given = ", ".join(f"{k}={v}" for k, v in (("coordinator", coordinator_address),
                                                   ("processes", num_processes),
                                                   ("process", process_id)) if v is not None)
        raise ConfigError(f"could not start JAX's multi-process runtime "
                          f"({given or 'auto-detected'}): {str(e).splitlines()[0][:300]}"
                          ) from e


def is_writer() -> bool:
    """True in the one process that writes logs, figures and reports (process 0)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier `name` (nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def agree(flag: bool) -> bool:
    """Process 0's `flag` on every process, so all of them take the same branch."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))
