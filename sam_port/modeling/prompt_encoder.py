"""SAM's prompt encoder: random-Fourier positions for points and boxes, a conv stack for masks."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sam_port.modeling.common import Embed, gelu, layer_norm_2d


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies (a fixed buffer in the original)."""

    num_pos_feats: int = 64

    def setup(self) -> None:
        self.positional_encoding_gaussian_matrix = self.param(
            "positional_encoding_gaussian_matrix",
            nn.initializers.normal(1.0),
            (2, self.num_pos_feats),
        )

    def _pe_encoding(self, coords: jax.Array) -> jax.Array:
        """Encode points normalised to [0, 1]^2; (..., 2) -> (..., 2 * num_pos_feats)."""
        coords = 2 * coords - 1
        coords = jnp.matmul(
            coords, self.positional_encoding_gaussian_matrix, precision=jax.lax.Precision.HIGHEST
        )
        coords = 2 * np.pi * coords
        return jnp.concatenate([jnp.sin(coords), jnp.cos(coords)], axis=-1)

    def dense(self, size: tuple[int, int]) -> jax.Array:
        """Encoding of every cell centre of an (h, w) grid: (h, w, C)."""
        h, w = size
        y = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / np.float32(h)
        x = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / np.float32(w)
        grid = np.stack(np.broadcast_arrays(x, y), axis=-1)
        return self._pe_encoding(jnp.asarray(grid))

    def with_coords(self, coords: jax.Array, image_size: tuple[int, int]) -> jax.Array:
        """Encode pixel coordinates (..., 2) = (x, y) of an image of size (H, W)."""
        scale = jnp.asarray([image_size[1], image_size[0]], jnp.float32)
        return self._pe_encoding(coords.astype(jnp.float32) / scale)


class PromptEncoder(nn.Module):
    """Points, boxes and masks -> (sparse (B, N, C), dense (B, h, w, C)) embeddings."""

    embed_dim: int
    image_embedding_size: tuple[int, int]
    input_image_size: tuple[int, int]
    mask_in_chans: int
    # SAM 2 takes box corners as points labelled 2 and 3 (`sam2/modeling/sam/prompt_encoder.py`);
    # SAM gives those labels no embedding
    corner_labels: bool = False

    num_point_embeddings = 4  # positive/negative point + 2 box corners

    def setup(self) -> None:
        c = self.embed_dim
        self.pe_layer = PositionEmbeddingRandom(c // 2)
        self.point_embeddings = [Embed(1, c) for _ in range(self.num_point_embeddings)]
        self.not_a_point_embed = Embed(1, c)
        self.mask_downscaling_0 = nn.Conv(self.mask_in_chans // 4, (2, 2), strides=(2, 2),
                                          padding="VALID")
        self.mask_downscaling_1 = layer_norm_2d()
        self.mask_downscaling_3 = nn.Conv(self.mask_in_chans, (2, 2), strides=(2, 2),
                                          padding="VALID")
        self.mask_downscaling_4 = layer_norm_2d()
        self.mask_downscaling_6 = nn.Conv(c, (1, 1))
        self.no_mask_embed = Embed(1, c)

    @property
    def mask_input_size(self) -> tuple[int, int]:
        return (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])

    def get_dense_pe(self) -> jax.Array:
        """Positional encoding of the image-embedding grid: (1, h, w, C)."""
        return self.pe_layer.dense(self.image_embedding_size)[None]

    def _embed_points(self, points: jax.Array, labels: jax.Array, pad: bool) -> jax.Array:
        points = points + 0.5  # shift to the pixel centre
        if pad:
            points = jnp.concatenate([points, jnp.zeros((points.shape[0], 1, 2), points.dtype)], 1)
            labels = jnp.concatenate([labels, -jnp.ones((labels.shape[0], 1), labels.dtype)], 1)
        emb = self.pe_layer.with_coords(points, self.input_image_size)
        labels = labels[..., None]
        emb = jnp.where(labels == -1, self.not_a_point_embed()[0], emb)
        emb = emb + jnp.where(labels == 0, self.point_embeddings[0]()[0], 0.0)
        emb = emb + jnp.where(labels == 1, self.point_embeddings[1]()[0], 0.0)
        if self.corner_labels:
            emb = emb + jnp.where(labels == 2, self.point_embeddings[2]()[0], 0.0)
            emb = emb + jnp.where(labels == 3, self.point_embeddings[3]()[0], 0.0)
        return emb

    def _embed_boxes(self, boxes: jax.Array) -> jax.Array:
        coords = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.with_coords(coords, self.input_image_size)
        corners = jnp.stack([self.point_embeddings[2]()[0], self.point_embeddings[3]()[0]])
        return emb + corners

    def _embed_masks(self, masks: jax.Array) -> jax.Array:
        x = gelu(self.mask_downscaling_1(self.mask_downscaling_0(masks)))
        x = gelu(self.mask_downscaling_4(self.mask_downscaling_3(x)))
        return self.mask_downscaling_6(x)

    def __call__(
        self,
        points: tuple[jax.Array, jax.Array] | None,
        boxes: jax.Array | None,
        masks: jax.Array | None,
    ) -> tuple[jax.Array, jax.Array]:
        """points: ((B, N, 2) xy in the input frame, (B, N) labels 1/0/-1, and 2/3 for box
        corners with `corner_labels`); boxes: (B, 4) xyxy;
        masks: (B, 4h, 4w, 1) low-res logits. Returns sparse (B, N', C) and dense (B, h, w, C)."""
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        sparse = [jnp.zeros((bs, 0, self.embed_dim), jnp.float32)]
        if points is not None:
            sparse.append(self._embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse.append(self._embed_boxes(boxes))
        sparse_embeddings = jnp.concatenate(sparse, axis=1)
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = jnp.broadcast_to(self.no_mask_embed()[0], (bs, h, w, self.embed_dim))
        return sparse_embeddings, dense
