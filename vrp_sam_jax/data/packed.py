"""Packed datasets: a benchmark's folder layout as ArrayRecord shards, written by a
tensorflow-datasets builder and read back by random access without TensorFlow.

A bucket or a network filesystem serves a few large files much faster than hundreds of
thousands of small ones. `pack` writes one record per image:
- `name`, as the split lists name it;
- `image`, the image file's bytes as stored (a JPEG stays that JPEG);
- `label`, the mask file's bytes (the class-map PNG of PASCAL and COCO, FSS-1000's mask,
  the binary mask of PATNet's Deepglobe, ISIC and chest X-rays, whose records are named
  `<class>/<listed file>`: a Deepglobe tile in several classes is packed once per class;
  LVIS-92i's records hold the images only, named as Matcher's files name them, and the files
  themselves are copied beside the records).

`vrp_sam_pack.json` beside the shards names the format, the benchmark and the image names in
record order. The packed readers (`open_packed`) decode the bytes with the folder readers'
own decoder and checks, so every episode read from the packed form equals the folder's bit
for bit. Pointing `data.root` at
the output directory is all a run needs (`roots.make_source` recognises it).

The images packed are those with both files in the folder layout: every image any split
list or protocol can name.

On a bucket (`--output gs://...`, `data.root=gs://...`): ArrayRecord reads local files only,
so `pack` writes locally and uploads the result (the index last), and a reader fetches the
shards once into a local copy (`local_copy`: a few large sequential reads instead of one per
image) and reads that.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vrp_sam_jax.data import lvis, sources
from vrp_sam_jax.errors import DataError, InputError
from vrp_sam_jax.names import PACKABLE_BENCHMARKS
from vrp_sam_jax.storage.files import parse_json, write_atomic, write_text_atomic
from vrp_sam_jax.storage.paths import AnyPath, absolute, as_path, copy

FORMAT = "vrp-sam-packed-v1"
INDEX = "vrp_sam_pack.json"
BUILDER = "vrp_sam_packed"
SPLIT = "images"


LOCAL_COPY = "VRP_SAM_PACKED_CACHE"  # where bucket shards are copied (default ~/.cache/...)


def is_packed(root: str | AnyPath) -> bool:
    return (as_path(root) / INDEX).is_file()


def layout_files(benchmark: str, root: str | AnyPath) -> Iterator[tuple[str, AnyPath, AnyPath]]:
    """(name, image file, mask file) of every image of the folder layout with both files,
    sorted by name."""
    if benchmark not in PACKABLE_BENCHMARKS:
        raise InputError(f"--benchmark {benchmark!r}: packable benchmarks are "
                         f"{', '.join(PACKABLE_BENCHMARKS)}")
    if benchmark == "lvis":  # the images; Matcher's files are copied beside (`annotations`)
        source = lvis.LvisSource(root)
        files = [(name, source.image_file(name), None) for name in source.image_names()]
        yield from files
        return
    source = sources.folder_source(benchmark, root)  # finds (and checks) the layout's root
    if isinstance(source, sources.PatnetFolderSource):
        # PATNet's episodes draw from every listed file: all of them are packed, or none
        files = sorted(source.layout_files())
        for _, image, mask in files:
            for path, what in ((image, "image"), (mask, "mask")):
                if not path.is_file():
                    raise DataError(f"{path}: missing {what} of a listed {benchmark} image "
                                    "(PATNet would draw it)")
        yield from files
        return
    if benchmark == "pascal":
        found = ((p.stem, source.image_path(p.stem), p)
                 for p in (source.root / "SegmentationClassAug").glob("*.png"))
    elif benchmark == "coco":
        found = ((f"{p.parent.name}/{p.stem}.jpg", source.root / p.parent.name / f"{p.stem}.jpg",
                  p) for p in (source.root / "annotations").glob("*2014/*.png"))
    else:
        found = ((f"{p.parent.name}/{p.name}", p, p.with_suffix(".png"))
                 for p in source.root.glob("*/*.jpg"))
    yield from sorted((name, image, mask) for name, image, mask in found
                      if image.is_file() and mask.is_file())


def _builder_class():
    """The tensorflow-datasets builder (defined on first use: importing tfds is slow)."""
    import tensorflow_datasets as tfds

    class VrpSamPacked(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """A benchmark's images and masks as stored files' bytes, in the order given."""

        VERSION = tfds.core.Version("1.0.0")

        def __init__(self, *, files: list[tuple[str, AnyPath, AnyPath]] | None = None,
                     **kwargs):
            self._files = files or []
            super().__init__(**kwargs)

        def _info(self):
            data = tfds.features.Tensor(shape=(None,), dtype=np.uint8)
            return tfds.core.DatasetInfo(
                builder=self, disable_shuffling=True,  # records in name order
                features=tfds.features.FeaturesDict(
                    {"name": tfds.features.Text(), "image": data, "label": data}))

        def _split_generators(self, dl_manager):
            return {SPLIT: self._generate_examples()}

        def _generate_examples(self):
            for name, image, mask in self._files:
                label = b"" if mask is None else mask.read_bytes()  # LVIS: in Matcher's files
                yield name, {"name": name,
                             "image": np.frombuffer(image.read_bytes(), np.uint8),
                             "label": np.frombuffer(label, np.uint8)}

    return VrpSamPacked


def pack(benchmark: str, data_root: str | AnyPath, output: str | AnyPath) -> dict:
    """Write the packed form of the folder layout under `data_root` into `output` (a local
    directory or a bucket URL); returns its index. The index is written last: an interrupted
    pack is not a packed dataset."""
    output = absolute(output)
    if is_packed(output):
        raise InputError(f"{output}: already holds a packed dataset ({INDEX}); choose another "
                         "--output or remove it")
    files = list(layout_files(benchmark, data_root))
    if not files:
        raise DataError(f"{data_root}: no image with its mask found to pack for {benchmark}")
    extra = annotations(benchmark, data_root)
    if isinstance(output, Path):
        return _pack_local(benchmark, files, output, extra)
    with tempfile.TemporaryDirectory(prefix="vrp_sam_pack_") as staging:
        index = _pack_local(benchmark, files, Path(staging), extra)
        shards = sorted(p for p in Path(staging).rglob("*") if p.is_file() and p.name != INDEX)
        for file in tqdm(shards, desc=f"uploading to {output}", unit="file"):
            copy(file, output / file.relative_to(staging).as_posix())
        write_text_atomic(output / INDEX, json.dumps(index))
    return index


def annotations(benchmark: str, data_root: str | AnyPath) -> list[AnyPath]:
    """Files a packed dataset keeps as they are, beside its records: LVIS-92i's annotation
    files (the masks are drawn from them)."""
    if benchmark != "lvis":
        return []
    root = lvis.LvisSource(data_root).root
    return [root / name for name in lvis.SPLIT_FILES.values() if (root / name).is_file()]


def _pack_local(benchmark: str, files: list[tuple[str, AnyPath, AnyPath | None]],
                output: Path, extra: list[AnyPath]) -> dict:
    builder = _builder_class()(files=files, data_dir=str(output / "records"),
                               file_format="array_record")
    builder.download_and_prepare()
    for file in extra:
        copy(file, output / file.name)
    index = {"format": FORMAT, "benchmark": benchmark, "builder": BUILDER,
             "records": str(Path(builder.data_dir).relative_to(output)),
             "names": [name for name, _, _ in files]}
    write_text_atomic(output / INDEX, json.dumps(index))
    return index


def local_copy(root: AnyPath, index: dict, cache: str | Path | None = None) -> Path:
    """A packed dataset on a bucket, copied once into a local directory (`cache`, else
    $VRP_SAM_PACKED_CACHE, else ~/.cache/vrp_sam_jax/packed), keyed by its URL and index. A
    copy is complete once its `complete.json` exists (written last), and is reused while it
    lists the same files and sizes as the bucket (a dataset packed again is copied again)."""
    base = Path(cache or os.environ.get(LOCAL_COPY) or
                Path.home() / ".cache" / "vrp_sam_jax" / "packed").expanduser()
    key = hashlib.sha1(f"{root}\n{json.dumps(index, sort_keys=True)}".encode()).hexdigest()
    local = base / key[:16]
    remote = root / index["records"]
    files = _remote_files(remote)
    if not files:
        raise DataError(f"{remote}: no packed records there (named by {root / INDEX})")
    listing = {str(f.relative_to(remote)): f.stat().length for f in files}
    done = local / "complete.json"
    if done.is_file() and json.loads(done.read_text()).get("files") == listing:
        return local
    for file in tqdm(files, desc=f"copying {root} to {local}", unit="file"):
        target = local / index["records"] / file.relative_to(remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, lambda temporary, f=file: copy(f, temporary))
    write_text_atomic(local / INDEX, json.dumps(index))
    write_text_atomic(done, json.dumps({"source": str(root), "files": listing}))
    return local


def _remote_files(directory: AnyPath) -> list[AnyPath]:
    """Every file under `directory` on a bucket (the builder's tree is a few levels deep)."""
    found, pending = [], [directory]
    while pending:
        for entry in pending.pop().iterdir():
            (pending if entry.is_dir() else found).append(entry)
    return sorted(found, key=str)


def _read_index(root: AnyPath) -> dict:
    path = root / INDEX
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: unreadable packed-dataset index ({e})") from e
    index = parse_json(data, str(path), "packed-dataset index", DataError)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"{path}: not a {FORMAT} index")
    return index


class _Records:
    """Random access to one packed dataset's records: name -> {"image", "label"} bytes."""

    def __init__(self, root: str | AnyPath):
        self.root = absolute(root)
        index = _read_index(self.root)
        self.benchmark = index["benchmark"]
        self.row = {name: i for i, name in enumerate(index["names"])}
        local = self.root if isinstance(self.root, Path) else local_copy(self.root, index)
        import tensorflow_datasets as tfds

        try:
            builder = tfds.builder_from_directory(str(local / index["records"]))
            self.records = builder.as_data_source()[SPLIT]
        except Exception as e:  # a missing or damaged shard shows as many exception types
            raise DataError(f"{self.root / index['records']}: unreadable packed records "
                            f"({type(e).__name__}: {str(e)[:200]})") from e
        if len(self.records) != len(self.row):
            raise DataError(f"{self.root}: {len(self.records)} records for "
                            f"{len(self.row)} names in {INDEX}")
        # an episode asks for an image, then its masks (and the image's size): one read each
        self._record = functools.lru_cache(maxsize=64)(self._read)

    def _read(self, row: int) -> dict:
        try:
            return self.records[row]
        except Exception as e:  # a shard cut short or damaged after the index was written
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise DataError(f"{self.root}: record {row} cannot be read, a shard is damaged or "
                            f"cut short ({type(e).__name__}: {first}); pack the dataset "
                            "again") from e

    def where(self, name: str, what: str) -> str:
        return f"{self.root} ({what} of {name!r})"

    def get(self, name: str, key: str) -> io.BytesIO:
        if name not in self.row:
            raise DataError(f"{self.root}: {name!r} is not in this packed {self.benchmark} "
                            "dataset (its image or mask was missing when it was packed)")
        return io.BytesIO(np.asarray(self._record(self.row[name])[key]).tobytes())

    def decode(self, name: str, what: str, mode: str | None) -> np.ndarray:
        """The image (`what="image"`) or its mask, decoded as the folder readers do."""
        key = "image" if what == "image" else "label"
        return sources.decode(self.get(name, key), self.where(name, what), what, mode)


class PackedLabelMapSource(sources.LabelMapSource):
    """PASCAL-5i or COCO-20i from its packed form."""

    def __init__(self, records: _Records):
        self.records = records
        self.benchmark = records.benchmark

    def image(self, name: str) -> np.ndarray:
        return self.records.decode(name, "image", "RGB")

    def _label_file(self, name: str) -> np.ndarray:
        return self.records.decode(name, "mask", None)

    def _image_size(self, name: str) -> tuple[int, int]:
        return sources.image_size(self.records.get(name, "image"))

    def _where(self, name: str, what: str) -> str:
        return self.records.where(name, what)


class PackedFssSource(sources.FssSource):
    """FSS-1000 from its packed form."""

    def __init__(self, records: _Records):
        self.records = records

    def image(self, name: str) -> np.ndarray:
        return self.records.decode(name, "image", "RGB")

    def _mask_file(self, name: str) -> np.ndarray:
        return self.records.decode(name, "mask", "L")

    def _mask_where(self, name: str) -> str:
        return self.records.where(name, "mask")

    def _category_files(self, category: str) -> list[str]:
        return sorted(name.partition("/")[2] for name in self.records.row
                      if name.partition("/")[0] == category)


class PackedPatnetSource(sources.PatnetSource):
    """Deepglobe, ISIC or the chest X-rays from their packed form: one record per listed file
    of a class, named `<class>/<file>` (`PatnetFolderSource.layout_files`)."""

    def __init__(self, records: _Records, layout: type[sources.PatnetFolderSource]):
        self.records = records
        self.root = records.root
        self.benchmark, self.classes, self.stem = layout.benchmark, layout.classes, layout.stem

    def listed_files(self, class0: int) -> list[str]:
        prefix = f"{class0 + 1}/"
        return sorted(n[len(prefix):] for n in self.records.row if n.startswith(prefix))

    def read_image(self, class0: int, file: str) -> np.ndarray:
        return self.records.decode(f"{class0 + 1}/{file}", "image", "RGB")

    def read_image_size(self, class0: int, file: str) -> tuple[int, int]:
        return sources.image_size(self.records.get(f"{class0 + 1}/{file}", "image"))

    def read_mask(self, class0: int, file: str) -> tuple[np.ndarray, str]:
        name = f"{class0 + 1}/{file}"
        return self.records.decode(name, "mask", "L"), self.records.where(name, "mask")


class PackedLvisSource(lvis.LvisSource):
    """LVIS-92i from its packed form: the images from the records, Matcher's files beside."""

    def __init__(self, records: _Records, shots: int = 1):
        super().__init__(records.root, shots)
        self.records = records

    def image_file(self, image_name: str) -> io.BytesIO:
        return self.records.get(image_name, "image")

    def image_where(self, image_name: str) -> str:
        return self.records.where(image_name, "image")


def open_packed(root: str | AnyPath, benchmark: str | None = None, shots: int = 1
                ) -> sources.EpisodeSource:
    """The reader of a packed dataset; `benchmark`, when given, must be the one packed
    (`shots`: LVIS-92i's classes depend on it)."""
    records = _Records(root)
    if benchmark is not None and benchmark != records.benchmark:
        raise DataError(f"{records.root}: a packed {records.benchmark} dataset, but the run "
                        f"reads {benchmark}")
    if records.benchmark == "lvis":
        return PackedLvisSource(records, shots)
    if records.benchmark == "fss":
        return PackedFssSource(records)
    if records.benchmark in sources.PATNET_SOURCES:
        return PackedPatnetSource(records, sources.PATNET_SOURCES[records.benchmark])
    return PackedLabelMapSource(records)
