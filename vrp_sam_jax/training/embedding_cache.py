"""SAM image embeddings of the target images, computed once and read back from disk.

SAM's image encoder is frozen and the images are not augmented, so a target's embedding never
changes during training or evaluation (docs/COMPUTATION.md §1). The cache key names everything the
embedding depends on: SAM type, a fingerprint of SAM's image-encoder weights, the input
resolution and the storage dtype. Under the key, each process writes the images of its share
(`part-<n>-p<process>.npy`, an (N, h, w, C) array, for a SAM 2 the embedding and its high-res
features packed as (N, h, w, 4C); and `.json`, the image names); readers
memory-map every part. On a directory all processes see (`shared`), each embeds 1/N of the
images; on a host's local disk, each embeds all of them. A part is only valid once its
`.json` exists (written last), so an interrupted pre-pass is redone for that part on the next
run. The directory may be on a bucket (`gs://...`): a part is written locally, then uploaded,
and read back one embedding at a time by ranged reads (`_RemoteRows`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from tqdm import tqdm

from vrp_sam_jax.data.sources import EpisodeSource
from vrp_sam_jax.errors import DataError
from vrp_sam_jax.models import VRPSam, VRPSamConfig
from vrp_sam_jax.runtime import processes, sharding
from vrp_sam_jax.runtime.sharding import one_in_flight, pad_rows
from vrp_sam_jax.storage.files import parse_json, replacing, write_text_atomic
from vrp_sam_jax.storage.paths import AnyPath, as_path, copy
from vrp_sam_jax.transforms.preprocess import normalize_image, resize_image

DTYPES = {"float16": np.float16, "float32": np.float32}


def fingerprint(tree: dict, sample: int = 4096) -> str:
    """A short hash of a parameter tree: every leaf's path, shape, dtype and a strided sample
    of its values."""
    digest = hashlib.sha1()
    for path, leaf in sorted(traverse_util.flatten_dict(tree).items()):
        array = np.asarray(leaf)
        flat = array.reshape(-1)
        digest.update(f"{'/'.join(path)}:{array.shape}:{array.dtype}".encode())
        digest.update(np.ascontiguousarray(flat[:: max(1, flat.size // sample)]).tobytes())
    return digest.hexdigest()[:16]


def cache_key(model_config: VRPSamConfig, sam_params: dict, dtype: str) -> str:
    dtype_of_compute = model_config.compute_dtype
    compute = "" if dtype_of_compute == "float32" else f"_{dtype_of_compute}-compute"
    return (f"{model_config.sam_type}_{model_config.image_size}px_{dtype}{compute}_"
            f"{fingerprint(image_feature_params(model_config, sam_params))}")


def image_feature_params(model_config: VRPSamConfig, sam_params: dict) -> dict:
    """The SAM parameters a cached embedding depends on: the image encoder's; for a SAM 2
    also the no-memory embedding and the high-res projections it packs with it."""
    if not model_config.sam2:
        return sam_params["image_encoder"]
    decoder = sam_params["sam_mask_decoder"]
    return {"image_encoder": sam_params["image_encoder"],
            "no_mem_embed": {"value": sam_params["no_mem_embed"]},
            "conv_s0": decoder["conv_s0"], "conv_s1": decoder["conv_s1"]}


class EmbeddingCache:
    """Read side: image name -> embedding (h, w, C) in the stored dtype."""

    def __init__(self, directory: str | AnyPath):
        self.directory = as_path(directory)
        self.rows: dict[str, tuple[int, int]] = {}
        self.parts: list[np.ndarray | _RemoteRows] = []
        for index_file in sorted(self.directory.glob("part-*.json"), key=str):
            index = parse_json(index_file.read_bytes(), str(index_file),
                               "embedding-cache index", DataError)
            names = index.get("names") if isinstance(index, dict) else None
            if not isinstance(names, list):
                raise DataError(f"{index_file}: not an embedding-cache index (no names); "
                                f"delete {self.directory} to embed again")
            array_file = index_file.with_suffix(".npy")
            array = (np.load(array_file, mmap_mode="r") if isinstance(array_file, Path)
                     else _RemoteRows(array_file))
            if array.shape[0] != len(names):
                raise DataError(f"{index_file}: {len(names)} names for {array.shape[0]} rows; "
                                f"delete {self.directory} to embed again")
            for row, name in enumerate(names):
                self.rows[name] = (len(self.parts), row)
            self.parts.append(array)

    def __contains__(self, name: str) -> bool:
        return name in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, names: Sequence[str]) -> np.ndarray:
        missing = [n for n in names if n not in self.rows]
        if missing:
            raise KeyError(f"{self.directory}: no cached embedding for {missing[:3]}")
        return np.stack([self.parts[p][r] for p, r in (self.rows[n] for n in names)])


class _RemoteRows:
    """The rows of a `.npy` file on a bucket, each read when asked for (one ranged read)."""

    def __init__(self, path: AnyPath):
        self.path = path
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or not shape:
            raise ValueError(f"{path}: not a C-ordered array of rows")
        self.shape, self.dtype = shape, dtype
        self.row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
        self._open = threading.local()  # one open file per loader thread: reads overlap

    def __getitem__(self, row: int) -> np.ndarray:
        file = getattr(self._open, "file", None)
        if file is None:
            file = self._open.file = self.path.open("rb")
        file.seek(self.offset + row * self.row_bytes)
        data = file.read(self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape(self.shape[1:])


IMAGES_PER_CALL = 8  # the pre-pass's batch per call in one process (`build`'s default)


@functools.lru_cache(maxsize=4)
def jit_embed(model_config: VRPSamConfig, mesh, dtype: str):
    """uint8 images -> embeddings in the storage dtype (cast on the device: half the copy)."""
    model = VRPSam(model_config)
    batch = sharding.batch_sharding(mesh)

    def embed(sam_params, images):
        out = model.apply({"params": {"sam": sam_params}}, normalize_image(images),
                          method=model.embed_targets)
        return out.astype(DTYPES[dtype])

    return jax.jit(embed, in_shardings=(sharding.replicated(mesh), batch),
                   out_shardings=batch)


def embedding_program(model_config: VRPSamConfig, dtype: str, devices: list,
                      batch: int = IMAGES_PER_CALL) -> tuple[Callable, jax.sharding.Mesh, int]:
    """(jitted embed, its mesh, images per call) as `build` runs the pre-pass in one process:
    over that process's `devices` alone, data-parallel, SAM replicated (its ViT-H weights are
    2.5 GB in float32: every accelerator this project targets holds them), `batch` images per
    call, rounded up to a multiple of the devices. Shared with `vrp-sam plan`, which compiles
    this program for one host of a slice."""
    mesh = sharding.make_mesh(devices=devices)
    return jit_embed(model_config, mesh, dtype), mesh, images_per_call(len(devices), batch)


def images_per_call(devices: int, batch: int = IMAGES_PER_CALL) -> int:
    """`batch`, or `batch` per device where the devices do not divide it."""
    return batch * devices if batch % devices else batch


def _load_images(source: EpisodeSource, names: list[str], size: int, batch: int,
                 workers: int) -> Iterable[tuple[int, np.ndarray]]:
    with ThreadPoolExecutor(workers, thread_name_prefix="cache") as pool:
        pending: collections.deque = collections.deque()
        starts = iter(range(0, len(names), batch))
        for start in starts:
            pending.append((start, [pool.submit(lambda n: resize_image(source.image(n), size),
                                                n) for n in names[start : start + batch]]))
            if len(pending) >= 2:
                first, futures = pending.popleft()
                yield first, np.stack([f.result() for f in futures])
        while pending:
            first, futures = pending.popleft()
            yield first, np.stack([f.result() for f in futures])


def build(root: str | AnyPath, names: Iterable[str], source: EpisodeSource,
          model_config: VRPSamConfig, sam_params: dict, *, dtype: str = "float16",
          batch: int = IMAGES_PER_CALL, workers: int = 4, progress: bool = True, shared: bool = True
          ) -> EmbeddingCache:
    """Embed the `names` not cached yet into `root/<cache_key>/part-*-p<process>.*` over this
    process's devices; returns what this process can read. `shared`: `root` is one directory
    every process sees and each embeds its 1/N of the names (call `build` in all processes,
    then wait for all before reading); otherwise `root` is this process's own and it embeds
    them all."""
    if dtype not in DTYPES:
        raise ValueError(f"cache dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    directory = as_path(root) / cache_key(model_config, sam_params, dtype)
    directory.mkdir(parents=True, exist_ok=True)
    existing = EmbeddingCache(directory)
    wanted = sorted({n for n in names if n not in existing})
    if shared:
        processes.barrier("embedding cache listed")  # every process splits the same list
        mine = wanted[jax.process_index() :: jax.process_count()]
    else:
        mine = wanted
    if mine:
        embed, mesh, per_call = embedding_program(model_config, dtype, jax.local_devices(), batch)
        sam = jax.device_put(sam_params, sharding.replicated(mesh))
        part = len(list(directory.glob("part-*.npy")))
        stem = directory / f"part-{part:03d}-p{jax.process_index()}"
        shape = jax.eval_shape(embed, sam, jnp.zeros((per_call, model_config.image_size,
                                                      model_config.image_size, 3), jnp.uint8)).shape
        target = stem.with_suffix(".npy")
        with contextlib.ExitStack() as scratch:
            # written locally: beside `target`, renamed over it when whole (`replacing`), or,
            # for a bucket, in a scratch folder and uploaded at the end
            if isinstance(target, Path):
                local = scratch.enter_context(replacing(target))
            else:
                local = Path(scratch.enter_context(tempfile.TemporaryDirectory())) / target.name
            out = np.lib.format.open_memmap(local, mode="w+", dtype=DTYPES[dtype],
                                            shape=(len(mine), *shape[1:]))
            with tqdm(total=len(mine), desc="SAM embedding cache", unit="img",
                      disable=not progress) as bar:
                # the devices embed batch i while the host stores batch i - 1 and the loader
                # threads read batch i + 1
                loaded = _load_images(source, mine, model_config.image_size, per_call, workers)
                rows = sharding.batch_sharding(mesh)  # this process's devices only
                for (start, images), result in one_in_flight(
                        loaded, lambda item: embed(sam, jax.device_put(pad_rows(item[1], per_call),
                                                                       rows))):
                    out[start : start + len(images)] = np.asarray(result)[: len(images)]
                    bar.update(len(images))
            out.flush()
            del out
            if not isinstance(target, Path):
                copy(local, target)
        write_text_atomic(stem.with_suffix(".json"), json.dumps({"names": mine}))
    return EmbeddingCache(directory)
