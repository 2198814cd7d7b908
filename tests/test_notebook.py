"""The Colab notebook runs top to bottom (toy mode: tiny model, toy benchmark, no download),
and the download helpers it uses work on data the test serves itself."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from vrp_sam_jax import downloads
from vrp_sam_jax.cli import main

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "evaluate_fold.ipynb"


def _code_cells() -> list[dict]:
    return [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]


def _python(source: str) -> str:
    """Shell and magic lines (`!pip ...`, `%...`) become no-ops; the rest is Python."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        lines.append(f"{indent}pass" if stripped.startswith(("!", "%")) else line)
    return "\n".join(lines)


def test_every_cell_compiles():
    for cell in _code_cells():
        compile(_python("".join(cell["source"])), "cell", "exec")
    tags = [c["metadata"].get("tags", []) for c in _code_cells()]
    assert sum("parameters" in t for t in tags) == 1


def test_notebook_runs_in_toy_mode(tmp_path):
    namespace: dict = {}
    for cell in _code_cells():
        source = _python("".join(cell["source"]))
        exec(compile(source, "cell", "exec"), namespace)  # noqa: S102
        if "parameters" in cell["metadata"].get("tags", []):
            namespace.update(TOY=True, WORK=str(tmp_path), NUM_EPISODES=8)
    result = namespace["result"]
    assert result["episodes"] == 8 and Path(result["figure"]).is_file()
    assert "| mIoU |" in namespace["table"]
    # the notebook's numbers are the command line's on the same checkpoint and episodes
    run = tmp_path / "toy_run"
    assert result["model"]["workdir"] == str(run) and result["model"]["which"] == "best"
    assert main(["evaluate", "--checkpoint", str(run), "--num-episodes", "8", "--figures", "0",
                 "--quiet", "--output-dir", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / "fold0.json").read_text())
    assert (cli["miou"], cli["fb_iou"], cli["class_iou"]) == (
        result["miou"], result["fb_iou"], {str(k): v for k, v in result["class_iou"].items()})


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
