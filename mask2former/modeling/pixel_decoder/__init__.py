"""Pixel decoders; importing this package registers them in ``PIXEL_DECODER_REGISTRY``."""

from .ms_deform_attn import MSDeformAttn
from .ms_deform_attn_op import ms_deform_attn
from .msdeformattn import MSDeformAttnPixelDecoder
from .registry import PIXEL_DECODER_REGISTRY, build_pixel_decoder

__all__ = [
    "PIXEL_DECODER_REGISTRY",
    "MSDeformAttn",
    "MSDeformAttnPixelDecoder",
    "build_pixel_decoder",
    "ms_deform_attn",
]
