"""Downloads against a local HTTP server (127.0.0.1) that supports range requests and, on
purpose, misbehaves: cut-short transfers, resumed replies at the wrong offset, a complete
partial file left by a kill before the rename."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading

import pytest

from vrp_sam_jax.storage import downloads

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """/file: the payload with Range support; /short: announces the whole payload, sends
    half; /bad-offset: answers a range with 206 from byte 0; /no-length: the payload without
    a Content-Length."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
        if self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            return
        if self.path == "/no-length":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(PAYLOAD)
            return
        if match and start >= len(PAYLOAD):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if match:
            offset = 0 if self.path == "/bad-offset" else start
            body = PAYLOAD[offset:]
            self.send_response(206)
            self.send_header("Content-Range",
                             f"bytes {offset}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            body = PAYLOAD
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("sha", [None, DIGEST[:8]])
def test_a_transfer_cut_short_is_not_the_file(url, tmp_path, sha):
    """With or without a hash: an error, and the partial file kept to resume from."""
    dest = tmp_path / "weights.pth"
    with pytest.raises(downloads.DownloadError, match="cut short") as info:
        downloads.download(f"{url}/short", dest, sha, progress=False)
    assert "\n" not in str(info.value)
    assert not dest.exists()  # only the .part, to resume
    assert (tmp_path / "weights.pth.part").stat().st_size == len(PAYLOAD) // 2


def test_a_partial_file_is_resumed_with_and_without_a_hash(url, tmp_path):
    for sha in (None, DIGEST[:8]):
        dest = tmp_path / f"resume_{sha}.bin"
        dest.with_name(dest.name + ".part").write_bytes(PAYLOAD[:1000])
        assert downloads.download(f"{url}/file", dest, sha, progress=False).read_bytes() \
            == PAYLOAD


def test_a_complete_part_left_by_a_kill_is_finished(url, tmp_path):
    dest = tmp_path / "done.bin"
    dest.with_name(dest.name + ".part").write_bytes(PAYLOAD)  # the server answers 416
    assert downloads.download(f"{url}/file", dest, DIGEST[:6], progress=False).read_bytes() \
        == PAYLOAD
    assert not dest.with_name(dest.name + ".part").exists()


def test_a_resume_at_the_wrong_offset_starts_again(url, tmp_path):
    dest = tmp_path / "offset.bin"
    dest.with_name(dest.name + ".part").write_bytes(PAYLOAD[:5000])
    assert downloads.download(f"{url}/bad-offset", dest, progress=False).read_bytes() == PAYLOAD


def test_checksums_are_checked_before_the_file_appears(url, tmp_path):
    dest = tmp_path / "voc.tar"
    with pytest.raises(downloads.DownloadError, match="MD5"):
        downloads.download(f"{url}/no-length", dest, md5="0" * 32, progress=False)
    assert not dest.exists() and not dest.with_name("voc.tar.part").exists()
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    assert downloads.download(f"{url}/no-length", dest, md5=md5, progress=False).is_file()
    assert len(downloads.VOC2012_MD5) == 32


def _zip(path, files: dict) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def test_fetch_data_lays_out_and_prepares_lvis_and_isic(tmp_path, capsys):
    """`vrp-sam fetch-data` from a mirror of the files (same names, small contents): the
    archives unpacked where the readers look, Matcher's files and PATNet's class folders
    made, and a second run finds everything there."""
    import functools
    import io
    import json

    import numpy as np
    from PIL import Image
    from test_lvis import _lvis_json

    from vrp_sam_jax.cli import main
    from vrp_sam_jax.data import isic_classes
    from vrp_sam_jax.data.fetch import ARCHIVES
    from vrp_sam_jax.data.roots import make_source

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(0)

    def jpeg() -> bytes:
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(out, "JPEG")
        return out.getvalue()

    for split, images, categories in (("train", 12, 30), ("val", 16, 34)):
        data, names = _lvis_json(rng, split, images, categories)
        _zip(mirror / f"lvis_v1_{split}.json.zip", {f"lvis_v1_{split}.json": json.dumps(data)})
        _zip(mirror / f"{split}2017.zip", {name: jpeg() for name in names})
    ids = sorted(isic_classes.class_of_image())[:6]
    _zip(mirror / "ISIC2018_Task1-2_Training_Input.zip",
         {f"ISIC2018_Task1-2_Training_Input/{i}.jpg": jpeg() for i in ids})
    _zip(mirror / "ISIC2018_Task1_Training_GroundTruth.zip",
         {f"ISIC2018_Task1_Training_GroundTruth/{i}_segmentation.png": b"png" for i in ids})
    assert {u.rsplit("/", 1)[1] for urls in ARCHIVES.values() for u, _, _ in urls} == {
        p.name for p in mirror.iterdir()}
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    root = tmp_path / "data"
    try:
        for dataset in ("lvis", "isic"):
            assert main(["fetch-data", "--dataset", dataset, "--data-root", str(root),
                         "--mirror", url, "--quiet"]) == 0
            assert len(json.loads(capsys.readouterr().out)["unpacked"]) == len(
                ARCHIVES[dataset])
            assert main(["fetch-data", "--dataset", dataset, "--data-root", str(root),
                         "--mirror", url, "--quiet"]) == 0
            again = json.loads(capsys.readouterr().out)
            assert again["unpacked"] == [] and len(again["present"]) == len(ARCHIVES[dataset])
    finally:
        server.shutdown()
    source = make_source("lvis", root)
    stem, *_ = source.classwise()[0]
    assert source.masks(stem, 0)[0].any() and source.image(stem).shape == (24, 32, 3)
    assert not list(root.rglob("*.zip")) and not list(root.rglob("*.part"))
    placed = sorted(p.relative_to(root / "ISIC" / "ISIC2018_Task1-2_Training_Input").as_posix()
                    for p in root.glob("ISIC/ISIC2018_Task1-2_Training_Input/?/*.jpg"))
    assert placed == sorted(f"{isic_classes.class_of_image()[i]}/{i}.jpg" for i in ids)
