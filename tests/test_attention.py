"""The image encoder's attention paths (query-blocked einsum, `jax.nn.dot_product_attention`)
equal the plain computation and PyTorch's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

from sam_port.modeling import image_encoder


@pytest.mark.parametrize("use_rel_pos", [True, False])
def test_attention_paths_match_plain_and_torch(use_rel_pos):
    grid, heads, dim = 32, 2, 8  # 1024 queries: 4 blocks of 256
    rng = np.random.default_rng(0)
    # head-major (B, heads, N, C), as the encoder's Attention lays them out
    q, k, v = (rng.normal(size=(2, heads, grid * grid, dim)).astype(np.float32)
               for _ in range(3))
    rel_pos = rng.normal(size=(2 * grid - 1, dim)).astype(np.float32)
    rel_h = rel_w = None
    if use_rel_pos:
        rel_h, rel_w = image_encoder.decomposed_rel_pos(
            jnp.asarray(q), jnp.asarray(rel_pos), jnp.asarray(rel_pos), (grid, grid), (grid, grid)
        )
    qs = jnp.asarray(q) * dim**-0.5
    assert grid * grid > image_encoder.QUERY_CHUNK
    blocked = image_encoder.attention(qs, k, v, rel_h, rel_w, (grid, grid), "blocked")
    plain = image_encoder.attend(qs, k, v, rel_h, rel_w, (grid, grid))
    fused = image_encoder.attention(qs, k, v, rel_h, rel_w, (grid, grid), "xla")
    np.testing.assert_allclose(np.asarray(blocked), np.asarray(plain), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(fused), np.asarray(plain), rtol=0, atol=1e-5)

    tq, tk, tv = (torch.from_numpy(x).reshape(2 * heads, -1, dim) for x in (q, k, v))
    attn = (tq * dim**-0.5) @ tk.transpose(-2, -1)
    if use_rel_pos:
        trel = torch.from_numpy(rel_pos)
        attn = add_decomposed_rel_pos(attn, tq, trel, trel, (grid, grid), (grid, grid))
    ref = (attn.softmax(-1) @ tv).reshape(2, heads, -1, dim).numpy()
    np.testing.assert_allclose(np.asarray(blocked), ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fused), ref, rtol=0, atol=1e-5)


def test_attention_implementation_is_checked_and_resolved():
    with pytest.raises(ValueError, match="unknown attention implementation"):
        image_encoder.resolve_implementation("flash", jnp.float32)
    # float32 never takes cuDNN's fused kernel (it has none); off a GPU "auto" is the blocked
    # path, on a GPU cuDNN's kernel in bf16 and jax.nn.dot_product_attention in float32
    gpu = jax.default_backend() == "gpu"
    assert image_encoder.resolve_implementation("auto", jnp.float32) == ("xla" if gpu
                                                                          else "blocked")
    assert image_encoder.resolve_implementation("auto", jnp.bfloat16) == ("cudnn" if gpu
                                                                           else "blocked")
    assert image_encoder.resolve_implementation("xla", jnp.bfloat16) == "xla"
