"""Dataset roots, work directories and the embedding cache on a bucket (`gs://...`): a local
Cloud Storage emulator (gcp-storage-emulator, in memory, on loopback) stands in for GCS, and
every client reaches it as it would reach GCS: gcsfs through epath, TensorStore (orbax's
arrays) and google-cloud-storage (tensorboardX). Nothing leaves the machine. What the runs
store is read back over the emulator's own HTTP API, not through the code under test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from pod_runs import LAST_STEP, TRAIN, cache, finish, free_port, launch, results

from vrp_sam_jax.errors import InputError
from vrp_sam_jax.storage.paths import absolute, as_path, is_url

REPO = Path(__file__).resolve().parents[1]
BUCKET = "vrp-sam-test"
class Emulator:
    """The emulator's HTTP API, to put and read objects without the code under test."""

    def __init__(self, url: str):
        self.url = url

    def put(self, name: str, data: bytes) -> None:
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        request = urllib.request.Request(f"{self.url}/upload/storage/v1/b/{BUCKET}/o?{query}",
                                         data=data, method="POST")
        urllib.request.urlopen(request, timeout=30).read()

    def get(self, name: str) -> bytes:
        quoted = urllib.parse.quote(name, safe="")
        return urllib.request.urlopen(f"{self.url}/storage/v1/b/{BUCKET}/o/{quoted}?alt=media",
                                      timeout=30).read()

    def names(self, prefix: str) -> list[str]:
        out, token = [], None
        while True:
            query = {"prefix": prefix, **({"pageToken": token} if token else {})}
            page = json.loads(urllib.request.urlopen(
                f"{self.url}/storage/v1/b/{BUCKET}/o?{urllib.parse.urlencode(query)}",
                timeout=30).read())
            out += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return sorted(out)

    def upload_tree(self, folder: Path, prefix: str) -> None:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                self.put(f"{prefix}/{file.relative_to(folder).as_posix()}", file.read_bytes())


def _with_generation(download):
    """The emulator's object download, also sending the object's generation headers, as GCS
    does; TensorStore reads an object's generation from them (without them it reports a
    "Malformed StorageGeneration" once an OCDBT manifest is read back)."""

    def wrapped(request, response, storage, *args, **kwargs):
        try:
            obj = storage.get_file_obj(request.params["bucket_name"],
                                       request.params["object_id"])
        except Exception:  # missing: the original answers 404
            obj = None
        download(request, response, storage, *args, **kwargs)
        if obj is not None and response.status in (200, 206):
            response["x-goog-generation"] = str(obj["generation"])
            response["x-goog-metageneration"] = str(obj["metageneration"])

    return wrapped


@pytest.fixture(scope="module")
def bucket():
    from gcp_storage_emulator.handlers import objects
    from gcp_storage_emulator.server import create_server

    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(objects, "download", _with_generation(objects.download))
        server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
        server.start()
        try:
            yield Emulator(f"http://127.0.0.1:{port}")
        finally:
            server.stop()


def _env(bucket: Emulator, tmp: Path, devices: int) -> dict:
    """The environment of a process whose Cloud Storage clients all talk to the emulator."""
    return {**os.environ, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "STORAGE_EMULATOR_HOST": bucket.url,  # gcsfs, google-cloud-storage
            "TENSORSTORE_GCS_HTTP_URL": bucket.url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",
            "FSSPEC_GCS_TOKEN": "anon",
            # gcsfs's zonal-bucket probe speaks gRPC, which the emulator does not
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "VRP_SAM_PACKED_CACHE": str(tmp / "packed_copies")}


def _run(bucket: Emulator, args: list[str], tmp: Path, devices: int = 4) -> str:
    """A command in a fresh process; its output."""
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=_env(bucket, tmp, devices),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (args, done.stderr[-3000:])
    return done.stdout


def _cli(bucket: Emulator, args: list[str], tmp: Path) -> str:
    return _run(bucket, ["-m", "vrp_sam_jax.cli", *args], tmp)


def _cli_in_one_process(bucket: Emulator, commands: list[list[str]], tmp: Path) -> None:
    _run(bucket, [str(REPO / "tests/scripts/commands_in_one_process.py"),
                  *map(json.dumps, commands)], tmp)


def _train_in_two_processes(bucket: Emulator, args: list[str], tmp: Path) -> dict:
    """`vrp-sam train` in 2 processes x 4 CPU devices (tests/pod_runs.py's layout and
    training, whose compiled programs the session's cache then holds); the result line of
    process 0, which process 1 must agree with."""
    logs = Path(tempfile.mkdtemp(dir=tmp))
    first, second = results(finish(launch(["train", *args], logs, 2, 4, _env(bucket, tmp, 4)),
                                   logs))
    assert first["steps"] == second["steps"]
    return first


def test_paths_keep_local_paths_and_name_bad_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert as_path("data/voc") == Path("data/voc") and not is_url("data/voc")
    assert absolute("data/voc") == tmp_path / "data/voc"
    assert str(absolute("gs://b/run")) == "gs://b/run" and is_url("gs://b/run")
    with pytest.raises(InputError, match=r"ftp://h/x: unsupported URL scheme ftp://"):
        as_path("ftp://h/x")


def test_dataset_roots_on_a_bucket_give_the_local_episodes(bucket, tmp_path):
    from test_packed import _pascal

    episodes = _pascal(tmp_path / "folder")
    bucket.upload_tree(tmp_path / "folder", "voc")
    listed = tmp_path / "episodes.json"
    listed.write_text(json.dumps([[e.query, list(e.supports), e.class0] for e in episodes]))
    # packed straight onto the bucket from the bucket's folder layout
    _cli(bucket, ["pack", "--benchmark", "pascal", "--data-root", f"gs://{BUCKET}/voc",
                  "--output", f"gs://{BUCKET}/packed"], tmp_path)
    stored = bucket.names("packed/")
    assert "packed/vrp_sam_pack.json" in stored and any(".array_record" in n for n in stored)
    assert json.loads(bucket.get("packed/vrp_sam_pack.json"))["benchmark"] == "pascal"

    script = str(REPO / "tests/scripts/bucket_episodes.py")
    out = {}
    for label, root in (("local", tmp_path / "folder"), ("folder", f"gs://{BUCKET}/voc"),
                        ("packed", f"gs://{BUCKET}/packed")):
        _run(bucket, [script, str(root), str(listed), str(tmp_path / f"{label}.npz")], tmp_path)
        out[label] = dict(np.load(tmp_path / f"{label}.npz"))
    assert str(out["local"]["kind"]) == str(out["folder"]["kind"]) == "PascalSource"
    assert str(out["packed"]["kind"]) == "PackedLabelMapSource"
    keys = sorted(k for k in out["local"] if k != "kind")
    assert len(keys) >= 8
    for label in ("folder", "packed"):
        assert sorted(k for k in out[label] if k != "kind") == keys
        for key in keys:
            assert np.array_equal(out["local"][key], out[label][key]), (label, key)
    # the packed shards were copied once to local disk, whole, and read there; a second
    # reader finds the copy complete and reads it without copying again
    copies = list((tmp_path / "packed_copies").glob("*/complete.json"))
    assert len(copies) == 1
    shards = sorted(copies[0].parent.rglob("*.array_record*"))
    assert shards and all(p.stat().st_size > 0 for p in shards)
    before = [p.stat().st_mtime_ns for p in (copies[0], *shards)]
    _run(bucket, [script, f"gs://{BUCKET}/packed", str(listed), str(tmp_path / "again.npz")],
         tmp_path)
    assert [p.stat().st_mtime_ns for p in (copies[0], *shards)] == before
    again = dict(np.load(tmp_path / "again.npz"))
    assert all(np.array_equal(out["local"][key], again[key]) for key in keys)


def test_lvis_and_patnet_roots_on_a_bucket_give_the_local_episodes(bucket, tmp_path):
    """LVIS-92i (Matcher's files) and Deepglobe (PATNet's folders), as folders on the bucket
    and packed onto it from there, list and load what the local folders do."""
    from test_cross_domain import write_patnet_datasets
    from test_lvis import write_lvis_dataset

    from vrp_sam_jax.data import protocols
    from vrp_sam_jax.data.roots import make_source

    local = tmp_path / "local"
    write_patnet_datasets(local, fss=False)
    write_lvis_dataset(local)
    bucket.upload_tree(local / "Deepglobe", "cd/Deepglobe")
    bucket.upload_tree(local / "LVIS", "cd/LVIS")
    _cli_in_one_process(bucket, [
        ["pack", "--benchmark", benchmark, "--data-root", f"gs://{BUCKET}/cd", "--output",
         f"gs://{BUCKET}/{benchmark}_packed"] for benchmark in ("deepglobe", "lvis")], tmp_path)
    script = str(REPO / "tests/scripts/bucket_episodes.py")
    for benchmark, protocol in (("deepglobe", "patnet"), ("lvis", "matcher")):
        roots = (f"gs://{BUCKET}/cd", f"gs://{BUCKET}/{benchmark}_packed")
        source = make_source(benchmark, local)
        episodes = protocols.episodes(benchmark, 0, 2, protocol, 12,
                                      classwise=source.classwise())
        listed = tmp_path / f"{benchmark}.json"
        listed.write_text(json.dumps([[e.query, list(e.supports), e.class0] for e in episodes]))
        out = {}
        for label, root in (("local", local), *enumerate(roots)):
            _run(bucket, [script, str(root), str(listed), str(tmp_path / f"{label}.npz"),
                          benchmark], tmp_path)
            out[label] = dict(np.load(tmp_path / f"{label}.npz"))
        keys = sorted(k for k in out["local"] if k != "kind")
        assert len(keys) >= 8 and "classwise" in keys
        for label in range(len(roots)):
            assert sorted(k for k in out[label] if k != "kind") == keys
            for key in keys:
                assert np.array_equal(out["local"][key], out[label][key]), (benchmark, key)


def _trainable(directory: Path) -> list[np.ndarray]:
    import jax

    from vrp_sam_jax.model_io import load

    model = load(directory)
    return [np.asarray(x) for x in jax.tree.leaves(model.params["encoder"])]


def test_a_run_on_a_bucket_resumes_and_equals_a_local_run(bucket, two_process_run,
                                                           tmp_path):
    """As on a TPU pod slice: 2 processes share the run and the embedding cache on the
    bucket; a first session stops after its first step (a checkpoint there), a second
    finishes. The same two processes on local disk, uninterrupted, give the same parameters
    bit for bit."""
    run, embeddings = f"gs://{BUCKET}/runs/toy", f"gs://{BUCKET}/cache"
    first = _train_in_two_processes(bucket, ["--workdir", run, *TRAIN, *cache(embeddings),
                                             "--stop-after-minutes", "0.0001"], tmp_path)
    assert first["stopped"] is True
    resumed = _train_in_two_processes(bucket, ["--workdir", run, *TRAIN, *cache(embeddings)],
                                      tmp_path)
    assert resumed["steps"] == LAST_STEP and resumed["resumed_from"] == 1
    local = two_process_run  # the same training on local disk, uninterrupted

    stored = bucket.names("runs/toy/")
    assert "runs/toy/config.json" in stored
    assert json.loads(bucket.get("runs/toy/config.json"))["cache"]["dir"] == embeddings
    assert any(n.startswith(f"runs/toy/checkpoints/{LAST_STEP}/") for n in stored)
    assert any(n.startswith("runs/toy/best/") for n in stored)
    assert any(n.startswith("runs/toy/tensorboard/events.out.tfevents") for n in stored)
    parts = [n for n in bucket.names("cache/") if n.endswith(".npy")]
    # embedded once, half by each process of the first session; the second read them
    assert [p[-6:] for p in parts] == ["p0.npy", "p1.npy"]

    # the bucket's run, exported to local disk, holds the local run's parameters bit for bit;
    # evaluation reads the run from the bucket and writes its report there
    exports = [["export", "--checkpoint", checkpoint, "--which", which, "--output",
                str(tmp_path / f"{where}_{which}")]
               for which in ("latest", "best") for where, checkpoint in (("bucket", run),
                                                                         ("local", str(local)))]
    evaluate = ["evaluate", "--shots", "1", "--num-episodes", "8", "--quiet"]
    _cli_in_one_process(bucket, [
        *exports, [*evaluate, "--checkpoint", run, "--output-dir", f"gs://{BUCKET}/eval"],
        [*evaluate, "--checkpoint", str(local), "--output-dir", str(tmp_path / "eval")]],
        tmp_path)
    for which in ("latest", "best"):
        a, b = _trainable(tmp_path / f"bucket_{which}"), _trainable(tmp_path / f"local_{which}")
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), which
    remote = json.loads(bucket.get("eval/fold0.json"))
    here = json.loads((tmp_path / "eval" / "fold0.json").read_text())
    assert remote["miou"] == here["miou"] and remote["class_areas"] == here["class_areas"]
    assert "eval/class_iou_fold0.png" in bucket.names("eval/")
