"""Reading PyTorch files without PyTorch, converting SAM checkpoints, and their errors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_sam import state_dict_numpy

import sam_port
from sam_port.convert import params_to_state_dict
from sam_port.torch_pickle import CheckpointError, load_state_dict, load_torch_file


def test_reader_matches_torch_load(tmp_path):
    base = torch.randn(6)
    sd = {
        "f32": torch.randn(3, 4),
        "transposed": torch.randn(4, 3).t(),  # non-contiguous strides
        "sliced": torch.arange(10)[2:7],  # storage offset
        "bf16": torch.randn(2, 2).to(torch.bfloat16),
        "f16": torch.randn(5).half(),
        "scalar": torch.tensor(3.5),
        "param": torch.nn.Parameter(torch.randn(5)),
        "bool": torch.tensor([True, False, True]),
        "view_a": base[:3],  # two views of one storage
        "view_b": base[3:],
    }
    path = tmp_path / "sd.pth"
    torch.save(sd, path)
    got = load_state_dict(path)
    assert set(got) == set(sd)
    for k, v in sd.items():
        ref = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
        assert got[k].shape == ref.shape, k
        np.testing.assert_array_equal(np.asarray(got[k], ref.dtype), ref, err_msg=k)


def test_reader_refuses_code_in_pickle(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(1), "obj": torch.nn.ReLU()}, path)
    with pytest.raises(CheckpointError, match="refusing to execute"):
        load_torch_file(path)


def test_reader_reports_corrupt_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.randn(100)}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        load_torch_file(truncated)
    not_zip = tmp_path / "text.pth"
    not_zip.write_text("hello")
    with pytest.raises(CheckpointError, match="text.pth"):
        load_torch_file(not_zip)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_torch_file(tmp_path / "absent.pth")
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as z:
        z.writestr("readme.txt", "x")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_torch_file(tmp_path / "plain.zip")


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_sam):
    path, model = tiny_sam
    return path, state_dict_numpy(model)


def test_converted_params_are_the_checkpoint(tiny_checkpoint):
    path, sd = tiny_checkpoint
    sam = sam_port.load_sam(path)  # model type inferred
    assert sam.model_type == "tiny"
    back = params_to_state_dict(sam.params)
    assert set(back) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


def _save(tmp_path, sd, name="bad.pth"):
    path = tmp_path / name
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, path)
    return path


def test_conversion_errors(tiny_checkpoint, tmp_path):
    path, sd = tiny_checkpoint
    with pytest.raises(CheckpointError, match=r"is a tiny .* but model type vit_b"):
        sam_port.load_sam(path, "vit_b")
    with pytest.raises(ValueError, match="unknown SAM model type"):
        sam_port.load_sam(path, "vit_x")

    missing = dict(sd)
    del missing["mask_decoder.iou_token.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys: mask_decoder\.iou_token\.weight"):
        sam_port.load_sam(_save(tmp_path, missing))

    extra = dict(sd, **{"image_encoder.extra.weight": np.ones(3, np.float32)})
    with pytest.raises(CheckpointError, match=r"unexpected keys: image_encoder\.extra\.weight"):
        sam_port.load_sam(_save(tmp_path, extra))

    wrong = dict(sd, **{"mask_decoder.mask_tokens.weight": np.ones((5, 7), np.float32)})
    with pytest.raises(CheckpointError, match=r"shape mismatches: mask_decoder\.mask_tokens"):
        sam_port.load_sam(_save(tmp_path, wrong))

    other = {"module.downsample_query.0.weight": np.ones((256, 1536, 1, 1), np.float32)}
    with pytest.raises(CheckpointError, match="not a Segment Anything checkpoint"):
        sam_port.load_sam(_save(tmp_path, other, "vrp.pth"))


def test_orbax_round_trip_loads_without_torch(tiny_checkpoint, tmp_path):
    path, sd = tiny_checkpoint
    out = tmp_path / "converted"
    sam_port.save_sam(sam_port.load_sam(path), out)
    np.savez(tmp_path / "ref.npz", **sd)
    script = Path(__file__).resolve().parent / "scripts" / "load_without_torch.py"
    result = subprocess.run([sys.executable, str(script), "sam", str(out),
                             str(tmp_path / "ref.npz")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    with pytest.raises(CheckpointError, match="holds a tiny SAM"):
        sam_port.load_sam(out, "vit_h")
    with pytest.raises(CheckpointError, match="not a converted SAM directory"):
        sam_port.load_sam(tmp_path)


def test_predictor_input_errors(tiny_checkpoint):
    sam = sam_port.load_sam(tiny_checkpoint[0])
    pred = sam_port.SamPredictor(sam)
    with pytest.raises(RuntimeError, match="set_image"):
        pred.predict(point_coords=np.array([[1, 1]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        pred.set_image(np.zeros((10, 10), np.uint8))
    pred.set_image(np.full((30, 40, 3), 7, np.uint8))
    with pytest.raises(ValueError, match="2 points but 1 labels"):
        pred.predict(point_coords=np.array([[1, 1], [2, 2]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="box must be one x0,y0,x1,y1 box"):
        pred.predict(box=np.array([[1, 1, 5, 5], [2, 2, 6, 6]]))
    with pytest.raises(ValueError, match="mask_input must have shape"):
        pred.predict(mask_input=np.zeros((1, 8, 8)))


def test_image_embedding_reused_across_prompts(tiny_checkpoint):
    """One set_image, many prompts: the embedding is computed once and not recomputed."""
    sam = sam_port.load_sam(tiny_checkpoint[0])
    pred = sam_port.SamPredictor(sam)
    pred.set_image(np.random.default_rng(0).integers(1, 255, (50, 70, 3), dtype=np.uint8))
    embedding = pred.embedding_nhwc
    for x in range(3):
        pred.predict(point_coords=np.array([[10.0 * x, 5.0]]), point_labels=np.array([1]))
    assert pred.embedding_nhwc is embedding
    features = pred.get_image_embedding()
    assert features.shape == (1, 32, 8, 8)  # the official layout, (1, C, h, w)
    assert pred.embedding_nhwc.shape == (1, 8, 8, 32)
    np.testing.assert_array_equal(np.asarray(features).transpose(0, 2, 3, 1),
                                  np.asarray(pred.embedding_nhwc))


def _crafted(path, size, stride, offset=0, numel=6, data_bytes=24, memo_index=None):
    """A one-tensor checkpoint whose pickle declares the given view of a float storage."""
    from sam_port import torch_save as ts

    storage = ts._tuple([ts._text("storage"), ts._global("torch", "FloatStorage"),
                         ts._text("0"), ts._text("cpu"), ts._int(numel)])
    args = ts._tuple([storage + b"Q", ts._int(offset), ts._tuple([ts._int(d) for d in size]),
                      ts._tuple([ts._int(s) for s in stride]), b"\x89", ts._ordered_dict()])
    memo = b"" if memo_index is None else b"r" + memo_index.to_bytes(4, "little")
    pkl = (b"\x80\x02" + ts._ordered_dict() + memo + b"(" + ts._text("w")
           + ts._global("torch._utils", "_rebuild_tensor_v2") + args + b"Ru.")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", b"\x01" * data_bytes)
    return path


@pytest.mark.parametrize("case,message", [
    ("past_end", "reaches past its storage"),
    ("negative_stride", "is invalid"),
    ("negative_offset", "is invalid"),
    ("stride_zero_huge", "reaches past its storage"),
    ("numel_beyond_data", "is truncated"),
    ("memo_index", "memo index"),
])
def test_reader_checks_every_view_against_its_storage(tmp_path, case, message):
    path = tmp_path / f"{case}.pth"
    kwargs = {"past_end": dict(size=(3, 4), stride=(4, 1)),
              "negative_stride": dict(size=(2,), stride=(-1,), offset=1),
              "negative_offset": dict(size=(2,), stride=(1,), offset=-4),
              "stride_zero_huge": dict(size=(1 << 20, 1 << 20), stride=(0, 0)),
              "numel_beyond_data": dict(size=(6,), stride=(1,), numel=1 << 40),
              "memo_index": dict(size=(6,), stride=(1,), memo_index=0xFFFFFFF0)}[case]
    with pytest.raises(CheckpointError, match=message) as info:
        load_torch_file(_crafted(path, **kwargs))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    ok = load_torch_file(_crafted(tmp_path / "ok.pth", (2, 3), (3, 1)))
    np.testing.assert_array_equal(ok["w"], np.frombuffer(b"\x01" * 24, np.float32)
                                  .reshape(2, 3))


def test_reader_survives_fuzzing_under_a_memory_limit(tmp_path):
    """A few hundred random mutations of a small valid file: each loads or is refused with a
    one-line CheckpointError; never a crash, a hang, a memory blow-up or another exception."""
    base = torch.arange(12.0)
    torch.save({"w": torch.randn(3, 4), "t": torch.randn(4, 3).t(), "v": base[2:7],
                "i": torch.arange(5), "s": torch.tensor(2.5), "b": base[8:]},
               tmp_path / "good.pth")
    script = Path(__file__).resolve().parent / "scripts" / "fuzz_torch_reader.py"
    for seed in (0, 1):
        result = subprocess.run([sys.executable, str(script), str(tmp_path / "good.pth"),
                                 str(tmp_path), "300", str(seed)], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["other_count"] == 0, report
        assert report["loaded"] > 0 and report["refused"] > 100, report


def test_many_views_of_one_storage_are_refused_under_a_memory_limit(tmp_path):
    """A ~100 KB file whose 200 tensors all view one 64 MiB storage (deflated) would make a
    reader that copies each view hold 12.8 GB: refused in one line under a 3 GiB address
    space. Tensors sharing a storage share its memory."""
    big = torch.zeros(16 << 20)  # 64 MiB of float32
    torch.save({f"w{i}": big.view(4096, 4096) for i in range(200)}, tmp_path / "views.pth")
    with zipfile.ZipFile(tmp_path / "views.pth") as plain, zipfile.ZipFile(
            tmp_path / "crafted.pth", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as small:
        for info in plain.infolist():
            small.writestr(info.filename, plain.read(info))
    assert (tmp_path / "crafted.pth").stat().st_size < 200_000
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "from sam_port.torch_pickle import CheckpointError, load_state_dict\n"
            "try:\n    load_state_dict(sys.argv[1])\nexcept CheckpointError as e:\n"
            "    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "crafted.pth")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "crafted.pth: malformed PyTorch checkpoint (its tensors view" in result.stdout
    assert "the same data many times over" in result.stdout
    # a few views of one storage (tied weights) load, sharing it
    torch.save({"a": big[:1000], "b": big[1000:3000].view(2, 1000)}, tmp_path / "tied.pth")
    tied = load_state_dict(tmp_path / "tied.pth")
    assert tied["a"].shape == (1000,) and tied["b"].shape == (2, 1000)
    # views, not copies: b starts where a ends, in the one storage buffer
    bounds = np.lib.array_utils.byte_bounds
    assert bounds(tied["a"])[1] == bounds(tied["b"])[0]
