"""Flax modules of Segment Anything, laid out as `segment_anything.modeling`."""

from sam_port.modeling.image_encoder import ImageEncoderViT
from sam_port.modeling.mask_decoder import MaskDecoder
from sam_port.modeling.prompt_encoder import PositionEmbeddingRandom, PromptEncoder
from sam_port.modeling.sam import Sam
from sam_port.modeling.transformer import TwoWayTransformer

__all__ = [
    "ImageEncoderViT",
    "MaskDecoder",
    "PositionEmbeddingRandom",
    "PromptEncoder",
    "Sam",
    "TwoWayTransformer",
]
