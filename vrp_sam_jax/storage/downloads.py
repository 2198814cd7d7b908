"""Downloading weights and datasets for users (the Colab notebook): resumable, with progress,
checked against the expected SHA-256 (or its prefix, as in SAM's file names), and archive
extraction that refuses paths leaving the destination."""

from __future__ import annotations

import hashlib
import http.client
import re
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from vrp_sam_jax.errors import DownloadError
from vrp_sam_jax.storage.files import CHUNK, sha256
from vrp_sam_jax.storage.paths import move

SAM_URLS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}
# The DINOv2 hub checkpoints (facebookresearch/dinov2 `hubconf.py`'s URLs; no checksum is
# published for them).
DINOV2_URLS = {name: f"https://dl.fbaipublicfiles.com/dinov2/{name}/{name}_pretrain.pth"
               for name in ("dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14")}
VOC2012_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC2012_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"  # the published checksum (as torchvision's)


def sam_hash_prefix(url: str) -> str:
    """SAM's file names end with the first hex digits of the file's SHA-256."""
    return Path(url).stem.rsplit("_", 1)[-1]


def _matches(path: Path, sha256_prefix: str | None, md5: str | None) -> bool:
    return ((sha256_prefix is None or sha256(path).startswith(sha256_prefix))
            and (md5 is None or file_md5(path) == md5))


def file_md5(path: str | Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """("bytes START-END/TOTAL" or "bytes */TOTAL") -> (START, TOTAL); None where absent."""
    m = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (value or "").strip())
    if m is None:
        return None, None
    start, total = m.groups()
    return (None if start is None else int(start)), (None if total == "*" else int(total))


def download(url: str, dest: str | Path, sha256_prefix: str | None = None,
             progress: bool = True, md5: str | None = None) -> Path:
    """Fetch `url` to `dest` (skipped when `dest` exists and matches), resuming a partial
    `dest.part` with an HTTP range request. The size the server announces (Content-Length,
    Content-Range) is checked, so a transfer cut short is never taken for the file; a reply
    resumed at the wrong offset is started again; the hashes, when given, are checked before
    `dest` appears."""
    dest = Path(dest)
    if dest.is_file() and _matches(dest, sha256_prefix, md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(2):  # a second time from byte 0 when resuming went wrong
        have = part.stat().st_size if part.is_file() and attempt == 0 else 0
        try:
            if _fetch(url, part, have, dest.name, progress):
                break
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(f"{url}: download failed ({e}); run again to resume") from e
    else:
        raise DownloadError(f"{url}: the server does not resume downloads consistently")
    if not _matches(part, sha256_prefix, md5):
        part.unlink()
        expected = " and ".join(x for x in (sha256_prefix and f"SHA-256 {sha256_prefix}...",
                                            md5 and f"MD5 {md5}") if x)
        raise DownloadError(f"{url}: the file does not match its published {expected}; "
                            "deleted, run again")
    move(part, dest)  # the partial file is kept across runs to resume, so it is not `replacing`'s
    return dest


def _fetch(url: str, part: Path, have: int, name: str, progress: bool) -> bool:
    """Bring `part` to the whole file from byte `have`; False when it must start over."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise
        _, total = _content_range(e.headers.get("Content-Range"))
        return total == have  # already complete (killed before the rename), else start over
    with response:
        status = getattr(response, "status", 200)
        if status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != have:
                return False  # resumed at another offset: appending would corrupt the file
        else:  # the whole file (the server ignored the range)
            start, total = 0, response.length
        with open(part, "ab" if start else "wb") as f, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, desc=name,
                disable=not progress) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                f.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: the transfer was cut short ({size} of {total} bytes); "
                            "run again to resume")
    return True


def extract(archive: str | Path, dest: str | Path) -> Path:
    """Unpack a .tar/.tar.gz/.zip into `dest`, refusing members outside it."""
    archive, dest = Path(archive), Path(dest).absolute()
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                _inside(dest, name, archive)
            z.extractall(dest)
        return dest
    try:
        with tarfile.open(archive) as t:
            for member in t.getmembers():
                _inside(dest, member.name, archive)
            t.extractall(dest, filter="data")
    except tarfile.TarError as e:
        raise DownloadError(f"{archive}: not a readable tar or zip archive ({e})") from e
    return dest


def _inside(dest: Path, name: str, archive: Path) -> None:
    if not (dest / name).resolve().is_relative_to(dest.resolve()):
        raise DownloadError(f"{archive}: member {name!r} would be written outside {dest}")


def pascal_voc(data: str | Path, url: str = VOC2012_URL, md5: str | None = VOC2012_MD5,
               progress: bool = True) -> Path:
    """PASCAL VOC2012 with the SBD-augmented masks under `data`, as `make_source("pascal", ...)`
    reads it; returns the `VOCdevkit` folder. VOC2012 is downloaded (MD5-checked) and
    unpacked. `SegmentationClassAug.zip`, the masks every PASCAL-5i paper uses, is on Google
    Drive (linked from HSNet's README), not on the VOC server: put it in `data` first, and it
    is unpacked next to `JPEGImages`. Each step is skipped when its result is there."""
    data = Path(data)
    voc = data / "VOCdevkit" / "VOC2012"
    if not (voc / "JPEGImages").is_dir():
        extract(download(url, data / Path(url).name, md5=md5, progress=progress), data)
    if not (voc / "SegmentationClassAug").is_dir():
        aug = data / "SegmentationClassAug.zip"
        if not aug.is_file():
            raise DownloadError(f"{aug}: missing; download SegmentationClassAug.zip (linked "
                                "from HSNet's README) there, then run again")
        extract(aug, voc)
    return data / "VOCdevkit"
