"""One global-attention block of the ViT-B image encoder (4096 tokens, 12 heads, decomposed
rel-pos bias): PyTorch's computation vs ours (`sam_port`'s query-blocked attention), the
unblocked form and `jax.nn.dot_product_attention` with the rel-pos bias ("xla"), same run.

    python benchmarks/sam_global_attention.py

Prints one JSON line of median seconds per call, ratios torch / ours (above 1: ours faster) and
the max abs difference between the blocked and unblocked forms. Needs the test extra.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # noqa: E402,F401  (torchvision stand-in for segment_anything's import)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from segment_anything.modeling.image_encoder import (  # noqa: E402
    add_decomposed_rel_pos as torch_add_rel_pos,
)
from timing import median_seconds  # noqa: E402

from sam_port.modeling.image_encoder import (  # noqa: E402
    attend,
    attention,
    decomposed_rel_pos,
)

GRID, HEADS, HEAD_DIM = 64, 12, 64


def ours(q, k, v, rel_pos, implementation: str = "blocked"):
    """Head-major q, k, v (1, heads, N, C)."""
    rel_h, rel_w = decomposed_rel_pos(q, rel_pos, rel_pos, (GRID, GRID), (GRID, GRID))
    if implementation == "unblocked":
        return attend(q * HEAD_DIM**-0.5, k, v, rel_h, rel_w, (GRID, GRID))
    return attention(q * HEAD_DIM**-0.5, k, v, rel_h, rel_w, (GRID, GRID), implementation)


def main() -> None:
    rng = np.random.default_rng(0)
    shape = (1, HEADS, GRID * GRID, HEAD_DIM)
    q, k, v = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
    rel_pos = rng.normal(size=(2 * GRID - 1, HEAD_DIM)).astype(np.float32)

    tq, tk, tv = (torch.from_numpy(x).reshape(HEADS, -1, HEAD_DIM) for x in (q, k, v))
    trel = torch.from_numpy(rel_pos)

    def run_torch():
        with torch.no_grad():
            attn = (tq * HEAD_DIM**-0.5) @ tk.transpose(-2, -1)
            attn = torch_add_rel_pos(attn, tq, trel, trel, (GRID, GRID), (GRID, GRID))
            return attn.softmax(dim=-1) @ tv

    args = [jnp.asarray(x) for x in (q, k, v, rel_pos)]
    want = run_torch().reshape(shape).numpy()
    result = {"benchmark": "sam_global_attention_block",
              "device": str(jax.devices()[0].device_kind),
              "torch_seconds": round(median_seconds(run_torch, 3), 3)}
    for name in ("blocked", "unblocked", "xla"):
        fn = jax.jit(lambda *a, name=name: ours(*a, implementation=name))
        got = fn(*args)
        seconds = median_seconds(lambda fn=fn: jax.block_until_ready(fn(*args)), 3,
                                 warmup=True)
        result[f"{name}_seconds"] = round(seconds, 3)
        result[f"{name}_ratio_torch_over_ours"] = round(result["torch_seconds"] / seconds, 3)
        result[f"{name}_max_abs_diff_vs_torch"] = float(jnp.abs(got - want).max())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
