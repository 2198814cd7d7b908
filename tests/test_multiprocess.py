"""Several processes, as on a TPU pod slice or a GPU cluster: 2 processes x 4 fake CPU devices
on loopback (JAX's multi-controller runtime, gloo collectives) train like 1 process x 8
devices, resume bit for bit after both are SIGKILLed, and evaluate like 1 process."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from pod_runs import LAST_STEP, TRAIN, cache, finish, launch, log_excerpt, results

from vrp_sam_jax.cli import main
from vrp_sam_jax.training import partition


def _summaries(events: Path) -> dict[str, list]:
    """TensorBoard tag -> its values (floats, or image protos) in the event files under
    `events` (TFRecord framing: length, its CRC, the Event, its CRC)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list] = {}
    for path in sorted(events.iterdir()):
        data, at = path.read_bytes(), 0
        while at < len(data):
            length = int.from_bytes(data[at : at + 8], "little")
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
            at += 16 + length
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                out.setdefault(value.tag, []).append(
                    value.image if kind == "image" else value.simple_value)
    return out


def _trainable(workdir: Path) -> tuple[int, list[np.ndarray]]:
    from vrp_sam_jax.training.run_dir import restore

    config, model = restore(workdir, "latest")
    trainable, _ = partition.split(model.params, config.train.trainable)
    return model.info["step"], [np.asarray(x) for x in jax.tree.leaves(trainable)]


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def test_two_processes_train_like_one_process(two_process_run, tmp_path):
    finish(launch(["train", "--workdir", str(tmp_path / "run"), *TRAIN,
                   *cache(tmp_path / "cache")], tmp_path / "logs", 1, 8), tmp_path / "logs")
    step_two, two = _trainable(two_process_run)
    step_one, one = _trainable(tmp_path / "run")
    assert step_two == step_one == LAST_STEP
    # the same 8-device mesh; only the collectives differ (gloo between processes), so the
    # tolerance is the 8-vs-1-device test's AdamW one (a fraction of lr, 1e-3)
    assert _max_diff(two, one) < 2e-4
    # only process 0 writes logs: one TensorBoard file, metrics on its stderr alone
    assert len(list((two_process_run / "tensorboard").iterdir())) == 1
    summaries = _summaries(two_process_run / "tensorboard")
    assert len(summaries["train/loss"]) == LAST_STEP and len(summaries["val/miou"]) == 2
    from vrp_sam_jax.evaluation import figures

    for image in summaries["val/episodes"]:  # a figure of 4 episodes after each validation
        assert (image.height, image.width) == (
            figures.HEADER + 4 * (figures.CAPTION + figures.TILE) + 3 * figures.GAP
            + figures.LEGEND, 4 * figures.TILE + 3 * figures.GAP)
    assert len(summaries["val/episodes"]) == 2
    logs = two_process_run.parent / "logs"
    assert '"train/loss"' in (logs / "p0.err").read_text()
    assert '"train/loss"' not in (logs / "p1.err").read_text()


def test_both_processes_killed_resume_bit_identical(two_process_run, tmp_path):
    """SIGKILLed in the middle of an epoch (after its first step's checkpoint), both processes
    resume where it left off (parameters, optimizer, data position, random keys): the run ends
    as the uninterrupted one."""
    run, logs = tmp_path / "run", tmp_path / "logs"
    # here each process embeds every image (a host-local cache), and ends where the shared
    # cache's run does
    train = ["train", "--workdir", str(run), *TRAIN, *cache(tmp_path / "local", False)]
    procs = launch(train, logs, 2, 4)
    deadline = time.time() + 900
    # orbax renames a finished step into place, and keeps the last 2: any step before the
    # last (the first, mid-epoch, unless this process was long kept off a busy CPU)
    while not any((run / "checkpoints" / str(s)).is_dir() for s in range(1, LAST_STEP)):
        assert all(p.poll() is None for p in procs), [  # -9: killed, e.g. out of memory
            (p.returncode, log_excerpt(logs / f"p{i}.err")) for i, p in enumerate(procs)]
        assert time.time() < deadline
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()
    assert not (run / "checkpoints" / str(LAST_STEP)).exists()
    resumed = results(finish(launch(train, logs, 2, 4), logs))
    assert resumed[0]["steps"] == LAST_STEP and resumed[0]["resumed_from"] >= 1
    step_a, a = _trainable(two_process_run)
    step_b, b = _trainable(run)
    assert step_a == step_b == LAST_STEP
    assert _max_diff(a, b) == 0.0
    parts = sorted(p.name for p in (tmp_path / "local").glob("*/part-*.json"))
    assert [p[-7:] for p in parts] == ["p0.json", "p1.json"]  # each embedded all images


def test_two_process_evaluation_equals_one_process(two_process_run, tmp_path, capsys):
    def evaluate(processes: int) -> dict:
        out = tmp_path / f"eval{processes}"
        args = ["evaluate", "--checkpoint", str(two_process_run), "--which", "latest",
                "--num-episodes", "24", "--figures", "2", "--output-dir", str(out), "--quiet"]
        if processes == 1:  # this process, one CPU device
            assert main(args) == 0, capsys.readouterr().err
        else:
            finish(launch(args, out / "logs", processes, 4), out / "logs")
        assert (out / "episodes_fold0.png").is_file() and (out / "fold0.md").is_file()
        return json.loads((out / "fold0.json").read_text())

    two, one = evaluate(2), evaluate(1)
    assert two["episodes"] == one["episodes"] == 24
    assert two["class_areas"] == one["class_areas"]
    assert (two["miou"], two["fb_iou"], two["class_iou"]) == (
        one["miou"], one["fb_iou"], one["class_iou"])


@pytest.mark.parametrize("flags, message", [
    (["--coordinator-address", "nohost"], "expected HOST:PORT"),
    (["--coordinator-address", "127.0.0.1:99999"], "expected HOST:PORT"),
    (["--num-processes", "2", "--process-id", "2"], "must be in 0..1"),
])
def test_bad_process_options_are_one_line(flags, message, tmp_path, capsys):
    code = main(["train", "--workdir", str(tmp_path / "run"), *TRAIN, *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()
