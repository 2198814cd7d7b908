"""The Colab notebooks run top to bottom (toy mode: tiny model, toy benchmark, no download),
the training notebook resumes from its checkpoint when run again, and the download helpers
they use work on data the test serves itself."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import sys
import tarfile
import threading
import types
from pathlib import Path

import pytest

from vrp_sam_jax.cli import main
from vrp_sam_jax.storage import downloads

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "evaluate_fold.ipynb"
TRAIN_NOTEBOOK = NOTEBOOKS / "train_fold.ipynb"


def _code_cells(notebook: Path = NOTEBOOK) -> list[dict]:
    return [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]


def _python(source: str) -> str:
    """Shell lines (`!pip ...`) become calls of `_shell` with Colab's `{NAME}` expansion (an
    f-string); magic lines (`%...`) no-ops; the rest is Python."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith("!"):
            lines.append(f"{indent}_shell(f{stripped[1:]!r})")
        else:
            lines.append(f"{indent}pass" if stripped.startswith("%") else line)
    return "\n".join(lines)


@pytest.mark.parametrize("notebook", [NOTEBOOK, TRAIN_NOTEBOOK], ids=lambda p: p.stem)
def test_every_cell_compiles(notebook):
    for cell in _code_cells(notebook):
        compile(_python("".join(cell["source"])), "cell", "exec")
    tags = [c["metadata"].get("tags", []) for c in _code_cells(notebook)]
    assert sum("parameters" in t for t in tags) == 1


@pytest.fixture
def colab(monkeypatch) -> list[tuple]:
    """A stand-in of Colab: `google.colab.drive.mount` and `google.colab.auth
    .authenticate_user` record their calls (in order, in the list returned), and so does
    every shell line, which is not run."""
    import google

    calls: list[tuple] = []
    package = types.ModuleType("google.colab")
    package.drive = types.ModuleType("google.colab.drive")
    package.drive.mount = lambda mountpoint, **_: calls.append(("drive.mount", mountpoint))
    package.auth = types.ModuleType("google.colab.auth")
    package.auth.authenticate_user = lambda **_: calls.append(("auth.authenticate_user",))
    for name, module in (("google.colab", package), ("google.colab.drive", package.drive),
                         ("google.colab.auth", package.auth)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(google, "colab", package, raising=False)
    # the install cell restarts the session (kills its own process) where it replaced a
    # loaded package: recorded, never done to the test
    monkeypatch.setattr(os, "kill", lambda pid, signal: calls.append(("os.kill", pid, signal)))
    return calls


def _run(notebook: Path, calls: list | None = None, cells: int | None = None,
         shell=None, **parameters) -> dict:
    """The first `cells` code cells (all by default) in order, in one namespace, with
    `parameters` set after the parameters cell (as papermill does); shell lines are recorded
    in `calls` and handed to `shell` where given. Returns the namespace."""
    calls = [] if calls is None else calls

    def run_shell(command: str) -> None:
        calls.append(("!", command))
        if shell is not None:
            shell(command)

    namespace: dict = {"_shell": run_shell}
    for cell in _code_cells(notebook)[:cells]:
        source = _python("".join(cell["source"]))
        exec(compile(source, "cell", "exec"), namespace)  # noqa: S102
        if "parameters" in cell["metadata"].get("tags", []):
            namespace.update(parameters)
    return namespace


def test_notebook_runs_in_toy_mode(tmp_path, colab):
    namespace = _run(NOTEBOOK, colab, TOY=True, WORK=str(tmp_path), NUM_EPISODES=8)
    # installed from the SOURCE the install cell names; no accelerator here: nothing else
    assert colab == [("!", f'pip install -q "{namespace["SOURCE"]}"')]
    result = namespace["result"]
    assert result["episodes"] == 8 and Path(result["figure"]).is_file()
    assert Path(result["class_chart"]).is_file()
    assert "| mIoU |" in namespace["table"]
    # the notebook's numbers are the command line's on the same checkpoint and episodes
    run = tmp_path / "toy_run"
    assert result["model"]["workdir"] == str(run) and result["model"]["which"] == "best"
    assert main(["evaluate", "--checkpoint", str(run), "--num-episodes", "8", "--figures", "0",
                 "--quiet", "--output-dir", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / "fold0.json").read_text())
    assert (cli["miou"], cli["fb_iou"], cli["class_iou"]) == (
        result["miou"], result["fb_iou"], {str(k): v for k, v in result["class_iou"].items()})


def test_training_notebook_resumes_on_the_same_drive_folder(tmp_path, capsys, colab):
    """A first session stopped by its time budget after one step, then a second on the same
    Drive stand-in that continues from that checkpoint to the end, validates and evaluates."""
    drive, work = tmp_path / "drive", tmp_path / "work"
    first = _run(TRAIN_NOTEBOOK, colab, TOY=True, DRIVE=str(drive), WORK=str(work),
                 SESSION_MINUTES=0, NUM_EPISODES=8)
    # installed from SOURCE; nothing loaded was replaced (no restart); Drive is a folder here
    assert first["replaced"] == [] and colab == [("!", f'pip install -q "{first["SOURCE"]}"')]
    assert first["trained"]["stopped"] and first["trained"]["steps"] == 1
    assert "run all cells again to continue" in capsys.readouterr().out
    run = first["run"]
    assert run.parent.parent == drive and (run / "checkpoints" / "1").is_dir()
    assert first["model"].info["directory"] == "checkpoints"  # no validation yet: the latest
    second = _run(TRAIN_NOTEBOOK, TOY=True, DRIVE=str(drive), WORK=str(work),
                  SESSION_MINUTES=None, NUM_EPISODES=8)
    trained = second["trained"]
    assert (trained["resumed_from"], trained["steps"], trained["total_steps"]) == (1, 4, 4)
    assert not trained["stopped"] and "miou" in trained
    assert "steps 1 -> 4 of 4" in capsys.readouterr().out
    assert second["model"].info["directory"] == "best"  # validated at the epoch's end
    result = second["result"]
    assert result["episodes"] == 8 and Path(result["figure"]).is_file()
    assert Path(result["class_chart"]).is_file() and "| mIoU |" in second["table"]


def test_a_checkpoint_on_gcs_is_read_after_authenticating(toy_run, tmp_path, colab):
    """`CHECKPOINT = "gs://..."`: Colab's user is authenticated before gsutil copies the run
    (the stand-in's gsutil copies it from a folder standing for the bucket), which then loads;
    a checkpoint on Drive mounts it first."""
    bucket = tmp_path / "bucket"
    shutil.copytree(toy_run, bucket / "runs" / "toy")

    def gsutil(command: str) -> None:  # the other shell lines (pip) do nothing here
        copy = re.fullmatch(r'gsutil -m cp -r "gs://b/(.+)" "(.+)/"', command)
        if copy:
            shutil.copytree(bucket / copy[1], Path(copy[2]) / Path(copy[1]).name)

    namespace = _run(NOTEBOOK, colab, cells=4, shell=gsutil, CHECKPOINT="gs://b/runs/toy",
                     WORK=str(tmp_path / "work"))
    assert [c[0] for c in colab] == ["!", "auth.authenticate_user", "!"]
    assert colab[2][1].startswith('gsutil -m cp -r "gs://b/runs/toy"')
    assert namespace["CHECKPOINT"] == str(tmp_path / "work" / "toy")
    assert namespace["model"].config.sam_type == "tiny"  # the run, loaded from the copy
    colab.clear()
    # a checkpoint under /content/drive: Drive mounted before it is read (then not found here)
    with pytest.raises(Exception, match="/content/drive/MyDrive/run"):
        _run(NOTEBOOK, colab, cells=4, CHECKPOINT="/content/drive/MyDrive/run",
             SAM_CHECKPOINT=str(tmp_path / "sam.pth"), WORK=str(tmp_path / "work"))
    assert colab[1] == ("drive.mount", "/content/drive")


@pytest.fixture()
def server(tmp_path):
    files = tmp_path / "served"
    files.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(files))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield files, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_checks_hash_and_extracts(server, tmp_path):
    files, url = server
    payload = bytes(range(256)) * 4096
    digest = hashlib.sha256(payload).hexdigest()
    (files / f"weights_{digest[:6]}.pth").write_bytes(payload)
    name = f"weights_{digest[:6]}.pth"
    assert downloads.sam_hash_prefix(f"{url}/{name}") == digest[:6]
    got = downloads.download(f"{url}/{name}", tmp_path / "out" / name, digest[:6],
                             progress=False)
    assert got.read_bytes() == payload
    with pytest.raises(downloads.DownloadError, match="does not match its published SHA-256"):
        downloads.download(f"{url}/{name}", tmp_path / "bad.pth", "ffffff", progress=False)
    assert not (tmp_path / "bad.pth").exists()
    with pytest.raises(downloads.DownloadError, match="download failed"):
        downloads.download(f"{url}/missing.bin", tmp_path / "missing.bin", progress=False)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as t:
        data = b"hello"
        info = tarfile.TarInfo("VOC2012/JPEGImages/a.jpg")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    (files / "voc.tar").write_bytes(buffer.getvalue())
    archive = downloads.download(f"{url}/voc.tar", tmp_path / "voc.tar", progress=False)
    downloads.extract(archive, tmp_path / "data")
    assert (tmp_path / "data/VOC2012/JPEGImages/a.jpg").read_bytes() == b"hello"
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as t:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "evil.tar").write_bytes(evil.getvalue())
    with pytest.raises(downloads.DownloadError, match="outside"):
        downloads.extract(tmp_path / "evil.tar", tmp_path / "data")


def test_pascal_voc_download_and_unpack(server, tmp_path):
    """VOC2012 from the server, the augmented masks from the zip the user put beside it: the
    folder `make_source` reads; a missing zip is named, and nothing is fetched twice."""
    import zipfile

    import numpy as np
    from PIL import Image

    from vrp_sam_jax.data.roots import make_source

    files, url = server
    image, label = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(image, format="JPEG")
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 3
    Image.fromarray(mask, mode="L").save(label, format="PNG")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as t:
        info = tarfile.TarInfo("VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg")
        info.size = len(image.getvalue())
        t.addfile(info, io.BytesIO(image.getvalue()))
    (files / "VOCtrainval.tar").write_bytes(buffer.getvalue())
    md5 = hashlib.md5(buffer.getvalue()).hexdigest()
    data = tmp_path / "data"
    with pytest.raises(downloads.DownloadError, match="SegmentationClassAug.zip: missing"):
        downloads.pascal_voc(data, f"{url}/VOCtrainval.tar", md5, progress=False)
    with zipfile.ZipFile(data / "SegmentationClassAug.zip", "w") as z:
        z.writestr("SegmentationClassAug/2007_000032.png", label.getvalue())
    (files / "VOCtrainval.tar").unlink()  # already fetched and unpacked: not asked for again
    root = downloads.pascal_voc(data, f"{url}/VOCtrainval.tar", md5, progress=False)
    source = make_source("pascal", root)
    assert source.present_classes("2007_000032") == [2]
    assert source.image("2007_000032").shape == (8, 8, 3)
