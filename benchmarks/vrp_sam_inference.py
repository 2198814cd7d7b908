"""Per-target VRP-SAM inference time: ours vs the PyTorch reference (tests/torch_vrp.py, the
release's computation), same weights, same inputs, same run.

    python benchmarks/vrp_sam_inference.py --backbone resnet50 --sam-type tiny --repeats 3

Two figures, both per target at the release's 512x512:
  - full: reference + target from scratch (what the release computes for every target);
  - cached_reference: ours with the reference encoded once (`VRPSamPredictor`), against the
    same release-style full computation in PyTorch (what a user of each gets per target).
Prints one JSON line with median seconds and the ratios torch / ours (above 1: ours faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from reference_pair import add_model_args, build_pair  # noqa: E402
from timing import median_seconds  # noqa: E402

from vrp_sam_jax.inference import encode_reference, predict_logits  # noqa: E402
from vrp_sam_jax.models import VRPSam  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(parser, "resnet50", 512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    pair = build_pair(args.backbone, args.sam_type, args.image_size)
    torch_model = pair.torch_model.eval()
    config = pair.config
    params = jax.device_put(pair.params)

    s = args.image_size
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1, 1, s, s, 3)).astype(np.float32)
    target = rng.normal(size=(1, s, s, 3)).astype(np.float32)
    mask = np.zeros((1, 1, s, s), np.float32)
    mask[..., s // 4 : 3 * s // 4, s // 3 : 2 * s // 3] = 1
    t_ref, t_target, t_mask = (torch.from_numpy(np.ascontiguousarray(np.moveaxis(ref, -1, 2))),
                               torch.from_numpy(np.ascontiguousarray(np.moveaxis(target, -1, 1))),
                               torch.from_numpy(mask))
    full = jax.jit(VRPSam(config).apply)

    def run_torch():
        with torch.no_grad():
            return torch_model(t_target, t_ref, t_mask)

    def run_ours_full():
        return jax.block_until_ready(full({"params": params}, ref, mask, target))

    reference = encode_reference(config, params, ref, mask)

    def run_ours_cached():
        return jax.block_until_ready(predict_logits(config, params, reference, target))

    start = time.perf_counter()
    got = run_ours_full()
    compile_s = time.perf_counter() - start
    run_ours_cached()
    want = run_torch()
    torch_s = median_seconds(run_torch, args.repeats)
    full_s = median_seconds(run_ours_full, args.repeats)
    cached_s = median_seconds(run_ours_cached, args.repeats)
    result = {
        "benchmark": "vrp_sam_inference_per_target",
        "backbone": args.backbone, "sam_type": args.sam_type, "image": f"{s}x{s}",
        "device": str(jax.devices()[0].device_kind), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
        "max_abs_logit_diff": float(np.abs(np.asarray(got) - want.numpy()).max()),
        "torch_seconds": round(torch_s, 3),
        "ours_full_seconds": round(full_s, 3),
        "ours_cached_reference_seconds": round(cached_s, 3),
        "ours_compile_seconds": round(compile_s, 1),
        "ratio_full": round(torch_s / full_s, 3),
        "ratio_cached_reference": round(torch_s / cached_s, 3),
        "versions": {"jax": jax.__version__, "torch": torch.__version__},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
