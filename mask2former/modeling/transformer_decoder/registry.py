"""Registry of transformer decoders (the query-based mask predictors)."""

from detectron2.config import CfgNode
from detectron2.utils.registry import Registry
from torch import nn

TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_MODULE")
TRANSFORMER_DECODER_REGISTRY.__doc__ = """
Transformer decoders that turn multi-scale pixel-decoder features into per-query class
logits and masks. Built from ``cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``.
"""


def build_transformer_decoder(cfg: CfgNode, in_channels: int, mask_classification: bool = True) -> nn.Module:
    name = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
    return TRANSFORMER_DECODER_REGISTRY.get(name)(cfg, in_channels, mask_classification)
