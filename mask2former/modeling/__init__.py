"""Importing this package registers the image model's parts with detectron2."""

from .backbone.swin import D2SwinTransformer
from .heads.mask_former_head import MaskFormerHead
from .pixel_decoder.msdeformattn import MSDeformAttnPixelDecoder
from .transformer_decoder.frame_decoder import VideoMultiScaleMaskedTransformerDecoder_frame

__all__ = [
    "D2SwinTransformer",
    "MSDeformAttnPixelDecoder",
    "MaskFormerHead",
    "VideoMultiScaleMaskedTransformerDecoder_frame",
]
