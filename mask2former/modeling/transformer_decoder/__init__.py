from .frame_decoder import VideoMultiScaleMaskedTransformerDecoder_frame
from .registry import TRANSFORMER_DECODER_REGISTRY, build_transformer_decoder

__all__ = [
    "TRANSFORMER_DECODER_REGISTRY",
    "VideoMultiScaleMaskedTransformerDecoder_frame",
    "build_transformer_decoder",
]
