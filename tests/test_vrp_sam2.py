"""VRP-SAM with SAM 2 as the segmenter (issue 32, part 2): the logits against a PyTorch
reference (the project's VRP encoder reference feeding the official `sam2` decoder), and a
toy run on the toy SAM 2 that trains with cached embeddings, predicts, evaluates and exports.

Random weights, float32; logits within 1e-3 (max abs), as VRP-SAM's own parity tests.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import torch
from test_vrp_parity import _episode
from torch_vrp import TorchVRPEncoder, TorchVRPSam2, nchw, randomize_

import sam_port
from vrp_sam_jax.cli import main
from vrp_sam_jax.models import VRPSam, VRPSamConfig
from vrp_sam_jax.weights.release import convert_release

LOGIT_TOL = 1e-3


def test_logits_match_the_pytorch_reference(toy_sam2):
    """ResNet-tiny + the toy SAM 2 (its image encoder included), 2 episodes of 2 shots."""
    path, torch_sam2 = toy_sam2
    torch_enc = randomize_(TorchVRPEncoder("resnet_tiny", hidden_dim=32), seed=5)
    torch_model = TorchVRPSam2(torch_enc, torch_sam2, image_size=96).eval()
    weights = convert_release(torch_enc.state_dict_release(), None, "mem")
    params = {**weights.params, "sam": sam_port.load_sam(path).params}
    model_config = VRPSamConfig(backbone="resnet_tiny", sam_type="sam2.1_toy", image_size=96)
    eps = [_episode(96, 2, "mask", seed=s) for s in (11, 12)]
    refs, masks, target = (np.concatenate(parts) for parts in zip(*eps, strict=True))
    with torch.no_grad():
        want = torch_model(nchw(target), nchw(refs), torch.from_numpy(masks)).numpy()
    got = jax.jit(VRPSam(model_config).apply)({"params": params}, refs, masks, target)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=LOGIT_TOL)


def test_a_toy_run_on_sam2_trains_predicts_evaluates_and_exports(tmp_path, capsys):
    """The toy config with `model.sam_type=sam2.1_toy` (random, frozen), only the VRP
    encoder trained, SAM 2's embeddings (packed with the high-res features) cached."""
    from test_model_io import _last_json, _predict, _toy_files

    run = tmp_path / "run"
    assert main(["train", "--config", "toy", "--workdir", str(run), "--quiet",
                 "--config.model.sam_type=sam2.1_toy",
                 "--config.train.trainable=encoder", "--config.cache.embeddings=True",
                 "--config.model.image_size=64", "--config.train.epochs=1",
                 "--config.train.steps_per_epoch=4", "--config.data.val_episodes=8"]) == 0
    capsys.readouterr()
    cache = list((run / "embedding_cache").glob("sam2.1_toy_64px_float16_*/part-*.npy"))
    assert cache and np.load(cache[0], mmap_mode="r").shape[1:] == (8, 8, 4 * 32)

    paths = _toy_files(tmp_path)
    from_run = _predict(run, paths, tmp_path / "run_out")
    assert _last_json(capsys)["model"]["sam"]
    assert main(["export", "--checkpoint", str(run), "--output", str(tmp_path / "exported")]) == 0
    capsys.readouterr()
    from_export = _predict(tmp_path / "exported", paths, tmp_path / "export_out")
    capsys.readouterr()
    for name in ("t1", "t2"):
        np.testing.assert_array_equal(from_run[name][0], from_export[name][0])
        assert from_run[name][0].std() > 0
    common = ["--num-episodes", "8", "--figures", "0", "--quiet"]
    assert main(["evaluate", "--checkpoint", str(run), "--output-dir", str(tmp_path / "e1"),
                 *common]) == 0
    capsys.readouterr()
    report = json.loads((tmp_path / "e1" / "fold0.json").read_text())
    assert report["episodes"] == 8 and 0 <= report["miou"] <= 100

    assert main(["export", "--checkpoint", str(run), "--format", "release", "--output",
                 str(tmp_path / "best_model.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "segmenter is SAM 2 (sam2.1_toy)" in err and "\n" not in err
    assert not (tmp_path / "best_model.pt").exists()


@pytest.mark.parametrize("alias, name", [("sam2.1_hiera_b+", "sam2.1_hiera_base_plus"),
                                         ("sam2_hiera_t", "sam2_hiera_tiny")])
def test_config_names_a_sam2_by_its_short_name(alias, name):
    assert VRPSamConfig(backbone="resnet_tiny", sam_type=alias).sam_type == name
