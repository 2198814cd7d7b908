"""Training checkpoints with orbax `CheckpointManager`, under the work directory:

- `checkpoints/<step>/`: the latest (last two kept) train state (step, trainable parameters,
  optimizer state) and the data stream position, saved every `checkpoint.every_steps` and at
  the end of each epoch, asynchronously; a run resumes from the newest one.
- `best/<step>/`: the trainable parameters with the best validation mIoU (one kept).
- `frozen/`: the frozen parameters when they were randomly initialised (toy, tests), so the
  run can be restored and evaluated without its initialisation code.
- `config.json`: the run's config; resuming with a config that differs where it matters
  (model, benchmark, fold, shots, condition, seed, batch, trainable parts, schedule) fails
  with the list of differences.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp

from vrp_sam_jax.image_io import InputError
from vrp_sam_jax.training.config import resume_mismatches, to_json


class CheckpointMismatchError(InputError):
    """A checkpoint that does not belong to this config."""


def write_config(workdir: Path, config: ml_collections.ConfigDict) -> None:
    """Store the run's config, or check it against the stored one when resuming."""
    path = workdir / "config.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        problems = resume_mismatches(saved, config)
        if problems:
            raise CheckpointMismatchError(
                f"{workdir}: its checkpoints come from a different config; use a new "
                "--workdir or the same settings:\n  " + "\n  ".join(problems))
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(to_json(config))


class Checkpoints:
    """The latest and the best checkpoints of one run."""

    def __init__(self, workdir: str | Path, async_save: bool = True, keep: int = 2):
        self.workdir = Path(workdir).absolute()
        self.latest = ocp.CheckpointManager(
            self.workdir / "checkpoints",
            options=ocp.CheckpointManagerOptions(max_to_keep=keep,
                                                 enable_async_checkpointing=async_save),
            item_names=("state", "position"))
        self.best = ocp.CheckpointManager(
            self.workdir / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, best_fn=lambda m: m["miou"], best_mode="max",
                keep_checkpoints_without_metrics=False, enable_async_checkpointing=async_save),
            item_names=("params", "metrics"))

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def save(self, step: int, state, position: dict, force: bool = False) -> None:
        self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), position=ocp.args.JsonSave(position)),
            force=force)

    def restore(self, abstract_state) -> tuple[object, dict]:
        """The newest checkpoint, shaped and sharded like `abstract_state`."""
        step = self.latest.latest_step()
        try:
            restored = self.latest.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), position=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointMismatchError(
                f"{self.workdir / 'checkpoints' / str(step)}: does not match the model and "
                f"trainable parts of this config ({e})") from e
        return restored["state"], dict(restored["position"])

    def save_best(self, step: int, trainable: dict, metrics: dict) -> bool:
        """Keep `trainable` if `metrics["miou"]` is the best so far."""
        scalar = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        return self.best.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(trainable), metrics=ocp.args.JsonSave(scalar)),
            metrics=scalar, force=True)

    def best_step(self) -> int | None:
        return self.best.best_step()

    def restore_best(self, abstract_trainable) -> tuple[dict, dict]:
        step = self.best.best_step()
        if step is None:
            raise CheckpointMismatchError(f"{self.workdir / 'best'}: no best checkpoint yet")
        restored = self.best.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_trainable), metrics=ocp.args.JsonRestore()))
        return restored["params"], dict(restored["metrics"])

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()
