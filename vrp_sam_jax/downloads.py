"""Downloading weights and datasets for users (the Colab notebook): resumable, with progress,
checked against the expected SHA-256 (or its prefix, as in SAM's file names), and archive
extraction that refuses paths leaving the destination."""

from __future__ import annotations

import tarfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from vrp_sam_jax.errors import DownloadError
from vrp_sam_jax.files import CHUNK, sha256

SAM_URLS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}
VOC2012_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"


def sam_hash_prefix(url: str) -> str:
    """SAM's file names end with the first hex digits of the file's SHA-256."""
    return Path(url).stem.rsplit("_", 1)[-1]


def download(url: str, dest: str | Path, sha256_prefix: str | None = None,
             progress: bool = True) -> Path:
    """Fetch `url` to `dest` (skipped when `dest` exists and matches), resuming a partial
    `dest.part` with an HTTP range request where the server allows it."""
    dest = Path(dest)
    if dest.is_file() and (sha256_prefix is None or sha256(dest).startswith(sha256_prefix)):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = have and getattr(response, "status", 200) == 206
            total = response.length
            mode = "ab" if resumed else "wb"
            start = have if resumed else 0
            with open(part, mode) as f, tqdm(total=(total or 0) + start, initial=start,
                                             unit="B", unit_scale=True, desc=dest.name,
                                             disable=not progress) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
    except OSError as e:
        raise DownloadError(f"{url}: download failed ({e}); run again to resume") from e
    if sha256_prefix is not None and not sha256(part).startswith(sha256_prefix):
        part.unlink()
        raise DownloadError(f"{url}: the file's SHA-256 does not start with {sha256_prefix}; "
                            "deleted, run again")
    part.rename(dest)
    return dest


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
