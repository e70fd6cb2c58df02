"""Registry and builder of pixel decoders (``MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME``)."""

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.utils.registry import Registry
from torch import nn

PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = """
Pixel decoders: ``cls(cfg, input_shape)`` with a ``forward_features(features)`` method that
returns ``(mask_features, transformer_encoder_features, multi_scale_features)``.
"""


def build_pixel_decoder(cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> nn.Module:
    """Build ``MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME``.

    Decoders registered the official Mask2Former way, in detectron2's
    ``SEM_SEG_HEADS_REGISTRY``, are found too.
    """
    name = cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME
    registry = PIXEL_DECODER_REGISTRY if name in PIXEL_DECODER_REGISTRY else SEM_SEG_HEADS_REGISTRY
    model = registry.get(name)(cfg, input_shape)
    if not callable(getattr(model, "forward_features", None)):
        raise TypeError(f"pixel decoder {name} has no forward_features(features) method")
    return model
