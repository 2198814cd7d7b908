"""The performance suite: in one run, on whatever devices are present, ours vs the PyTorch
reference on the same device with the same random weights:

  (a) SAM image embeddings per second (`sam_image_encoder.measure`),
  (b) VRP-SAM train steps per second with cached SAM embeddings (`train_step.measure`),
  (c) evaluation episodes per second (`evaluation.measure`),

plus SAM 2's image encoder (`sam2_image_encoder.measure`) and video propagation
(`sam2_video.measure`), both against the official `sam2`,
SAM's automatic mask generator (`automatic_mask_generator.measure`), batched inference
per target (`vrp_sam_inference.measure`), the embedding-cache
pre-pass against the bare encoder (`embedding_cache.measure`), the cost of bf16 compute on
the logits (max and mean abs difference vs float32) and, on an accelerator, the image
encoder's achieved TFLOP/s against the measured bf16 matmul peak.

    python benchmarks/suite.py                 # the preset for the device found (cpu / gpu)
    python benchmarks/suite.py --preset cpu --only a,sam2,video,b,c,amg,predict,cache,bf16

Prints one JSON line per measurement as it goes, then a Markdown table of the ratios (ours /
torch, above 1: ours faster) for docs/PERFORMANCE.md. Needs the test extra.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import automatic_mask_generator  # noqa: E402
import embedding_cache  # noqa: E402
import evaluation  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import sam2_image_encoder  # noqa: E402
import sam2_video  # noqa: E402
import sam_image_encoder  # noqa: E402
import torch  # noqa: E402
import train_step  # noqa: E402
import vrp_sam_inference  # noqa: E402
from timing import matmul_peak_tflops, torch_device  # noqa: E402

from vrp_sam_jax.models import VRPSam, VRPSamConfig, init_params  # noqa: E402

# a, sam2: (model_type, batch, compute dtypes, timed repeats: more for millisecond calls);
# video: (model_type, frames);
# b: (backbone, sam_type, size, batch); c: (backbone, sam_type, size, episodes, batch);
# amg: (model_type, points_per_side, height, width, repeats); predict: (backbone, sam_type,
# size, targets, batch); cache: (sam_type, size, images, batch); bf16: (backbone, sam_type,
# size)
PRESETS = {
    "cpu": {
        "a": [("tiny", 4, ("float32",), 20), ("vit_b", 1, ("float32",), 3)],
        "sam2": [("sam2.1_hiera_tiny", 1, ("float32",), 3)],
        "video": [("sam2.1_hiera_tiny", 16)],
        "b": [("resnet_tiny", "tiny", 128, 8), ("resnet50", "tiny", 256, 4)],
        "c": [("resnet_tiny", "tiny", 128, 96, 8), ("resnet50", "tiny", 256, 32, 4)],
        "amg": [("tiny", 32, 96, 128, 3), ("vit_b", 16, 480, 640, 2)],
        "predict": [("resnet_tiny", "tiny", 128, 32, 8), ("resnet50", "tiny", 256, 8, 8)],
        "cache": [("tiny", 128, 2048, 8)],
        "bf16": [("resnet50", "tiny", 256), ("resnet50", "vit_b", 512)],
    },
    "gpu": {
        "a": [(m, 8, ("float32", "bfloat16"), 10) for m in ("vit_b", "vit_l", "vit_h")],
        "sam2": [(f"sam2.1_hiera_{m}", 8, ("float32", "bfloat16"), 10)
                 for m in ("tiny", "base_plus", "large")],
        "video": [(f"sam2.1_hiera_{m}", 64) for m in ("tiny", "large")],
        "b": [("resnet50", "vit_h", 512, 8)],
        "c": [("resnet50", "vit_h", 512, 256, 8)],
        "amg": [("vit_h", 32, 768, 1024, 3)],
        "predict": [("resnet50", "vit_h", 512, 32, 8)],
        "cache": [("vit_h", 512, 128, 8)],
        "bf16": [("resnet50", "vit_h", 512)],
    },
}
PARTS = ("a", "sam2", "video", "b", "c", "amg", "predict", "cache", "bf16")


def bf16_logit_cost(backbone: str, sam_type: str, image_size: int, seed: int = 0) -> dict:
    """VRP-SAM logits with the frozen parts in bf16 vs float32: same random weights, random
    images, a blob prompt mask, batch 2 (1-shot)."""
    config = VRPSamConfig(backbone=backbone, sam_type=sam_type, image_size=image_size)
    params = init_params(config, seed)
    rng = np.random.default_rng(seed)
    refs = rng.normal(size=(2, 1, image_size, image_size, 3)).astype(np.float32)
    targets = rng.normal(size=(2, image_size, image_size, 3)).astype(np.float32)
    yy, xx = np.mgrid[:image_size, :image_size] / image_size
    masks = np.stack([((yy - 0.5) ** 2 + (xx - c) ** 2 < 0.06) for c in (0.4, 0.6)])
    masks = masks.astype(np.float32)[:, None]
    logits = {}
    for dtype in ("float32", "bfloat16"):
        model = VRPSam(dataclasses.replace(config, compute_dtype=dtype))
        logits[dtype] = np.asarray(jax.jit(model.apply)({"params": params}, refs, masks,
                                                        targets))
    diff = np.abs(logits["bfloat16"] - logits["float32"])
    return {"benchmark": "bf16_logit_cost", "backbone": backbone, "sam_type": sam_type,
            "image": f"{image_size}x{image_size}",
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "float32_max_abs_logit": float(np.abs(logits["float32"]).max()),
            "mask_agreement": float(((logits["bfloat16"] > 0) == (logits["float32"] > 0))
                                    .mean())}


def run(preset: dict, only: set[str], emit) -> list[dict]:
    results = []

    def record(result: dict) -> None:
        results.append(result)
        emit(result)

    on_accelerator = jax.default_backend() != "cpu"
    if on_accelerator and "a" in only:
        record({"benchmark": "matmul_peak", "dtype": "bfloat16",
                "tflops": round(matmul_peak_tflops("bfloat16"), 1)})
    for model_type, batch, dtypes, repeats in preset["a"] if "a" in only else []:
        for dtype in dtypes:
            record(sam_image_encoder.measure(model_type, repeats, batch, dtype))
    for model_type, batch, dtypes, repeats in preset["sam2"] if "sam2" in only else []:
        for dtype in dtypes:
            record(sam2_image_encoder.measure(model_type, repeats, batch, dtype))
    for model_type, frames in preset["video"] if "video" in only else []:
        record(sam2_video.measure(model_type, frames))
    for backbone, sam_type, size, batch in preset["b"] if "b" in only else []:
        record(train_step.measure(backbone, sam_type, size, batch, 5, cached_embeddings=True))
    for backbone, sam_type, size, episodes, batch in preset["c"] if "c" in only else []:
        record(evaluation.measure(backbone, sam_type, size, episodes, batch))
    for model_type, points, height, width, repeats in preset["amg"] if "amg" in only else []:
        record(automatic_mask_generator.measure(model_type, points, height, width, repeats))
    for backbone, sam_type, size, targets, batch in (preset["predict"] if "predict" in only
                                                     else []):
        record(vrp_sam_inference.measure(backbone, sam_type, size, targets, batch))
    for sam_type, size, images, batch in preset["cache"] if "cache" in only else []:
        record(embedding_cache.measure(sam_type, size, images, batch))
    for backbone, sam_type, size in preset["bf16"] if "bf16" in only else []:
        record(bf16_logit_cost(backbone, sam_type, size))
    return results


ENCODER_ROWS = {"sam_image_embedding": "(a) SAM image embeddings",
                "sam2_image_embedding": "SAM 2 image encodings (embedding + high-res features)"}


def markdown(results: list[dict]) -> str:
    """The table rows of docs/PERFORMANCE.md's summary."""
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    peak = next((r["tflops"] for r in results if r["benchmark"] == "matmul_peak"), None)
    rows = ["| measure | config | unit | PyTorch | ours | ours / PyTorch | notes |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        kind = r["benchmark"]
        if kind in ENCODER_ROWS:
            note = f"max abs diff {r['max_abs_embedding_diff']:.1e}"
            if peak and r["ours_tflops"]:
                note += (f"; {r['ours_tflops']:.1f} TFLOP/s = "
                         f"{r['ours_tflops'] / peak:.0%} of the bf16 matmul peak")
            rows.append(f"| {ENCODER_ROWS[kind]} | {r['model_type']}, {r['image']}, "
                        f"{r['compute_dtype']} | images/s | {r['torch_images_per_second']} | "
                        f"{r['ours_images_per_second']} | {r['ratio']} | {note} |")
        elif kind == "sam2_video_propagation":
            rows.append(f"| SAM 2 video propagation (`propagate_in_video`, a mask on frame 0) "
                        f"| {r['model_type']}, {r['video']}, float32 | frames/s | "
                        f"{r['torch_frames_per_second']} | {r['ours_frames_per_second']} | "
                        f"{r['ratio']} | last frame's max abs logit diff "
                        f"{r['max_abs_last_frame_diff']:.1e} |")
        elif kind == "train_step":
            rows.append(f"| (b) train steps, cached embeddings | {r['backbone']} + "
                        f"{r['sam_type']} SAM, {r['image']}, batch {r['batch']} | steps/s | "
                        f"{r['torch_steps_per_second']} | {r['ours_steps_per_second']} | "
                        f"{r['ratio']} | loss diff {r['loss_diff_dropout_off']:.1e} |")
        elif kind == "evaluation":
            rows.append(f"| (c) evaluation | {r['backbone']} + {r['sam_type']} SAM, "
                        f"{r['image']}, batch {r['batch']}, {r['episodes']} episodes | "
                        f"episodes/s | {r['torch_episodes_per_second']} | "
                        f"{r['ours_episodes_per_second']} | {r['ratio']} | mIoU "
                        f"{r['miou']['torch']:.4f} vs {r['miou']['ours']:.4f} |")
        elif kind == "automatic_mask_generator":
            rows.append(f"| SAM automatic mask generator | {r['model_type']}, {r['image']}, "
                        f"{r['points_per_side']}x{r['points_per_side']} points | images/s | "
                        f"{r['torch_images_per_second']} | {r['ours_images_per_second']} | "
                        f"{r['ratio']} | masks {r['masks']['torch']} vs {r['masks']['ours']} |")
        elif kind == "vrp_sam_inference":
            rows.append(f"| inference per target | {r['backbone']} + {r['sam_type']} SAM, "
                        f"{r['image']}, {r['targets']} targets of mixed sizes | targets/s | "
                        f"{1 / r['torch_seconds_per_target']:.2f} | "
                        f"{1 / r['ours_batched_seconds_per_target']:.2f} (batch {r['batch']}; "
                        f"one per call {1 / r['ours_one_per_call_seconds_per_target']:.2f}) | "
                        f"{r['ratio']} | max abs logit diff {r['max_abs_logit_diff']:.1e} |")
        elif kind == "embedding_cache_prepass":
            rows.append(f"| cache pre-pass vs bare encoder | {r['sam_type']} SAM, {r['image']}"
                        f", {r['images']} images, {r['devices']} device(s) | images/s | "
                        f"(bare encoder) {r['bare_encoder_images_per_second']} | "
                        f"{r['prepass_images_per_second']} | {r['ratio']} | "
                        "ours vs ours: the pre-pass's device utilisation |")
    costs = [r for r in results if r["benchmark"] == "bf16_logit_cost"]
    lines = [f"Device: {device}; PyTorch {torch.__version__} on {torch_device()} with "
             f"{torch.get_num_threads()} threads; jax {jax.__version__}; {os.cpu_count()} CPU "
             f"cores ({platform.machine()}).", "", *rows]
    if peak:
        lines += ["", f"Measured bf16 matmul peak: {peak} TFLOP/s."]
    if costs:
        lines += ["", "| bf16 cost | config | max abs logit diff | mean abs logit diff | "
                  "max abs float32 logit | mask agreement |", "| --- | --- | --- | --- | --- "
                  "| --- |"]
        lines += [f"| frozen parts in bf16 | {r['backbone']} + {r['sam_type']} SAM, "
                  f"{r['image']} | {r['max_abs_diff']:.2e} | {r['mean_abs_diff']:.2e} | "
                  f"{r['float32_max_abs_logit']:.3f} | {r['mask_agreement']:.5f} |"
                  for r in costs]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="default: gpu on an accelerator, else cpu")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated subset of {', '.join(PARTS)}")
    args = parser.parse_args()
    preset = args.preset or ("cpu" if jax.default_backend() == "cpu" else "gpu")
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = only - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)} in --only")
    results = run(PRESETS[preset], only, lambda r: print(json.dumps(r), flush=True))
    print(markdown(results))


if __name__ == "__main__":
    main()
