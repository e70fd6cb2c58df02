"""``MaskFormerHead``: pixel decoder + transformer decoder, registered as a detectron2 head."""

import logging

from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import Tensor, nn

from ..pixel_decoder.registry import build_pixel_decoder
from ..transformer_decoder.registry import build_transformer_decoder

logger = logging.getLogger(__name__)

# The only transformer input this codebase supports: the pixel decoder's multi-scale maps.
MULTI_SCALE_FEATURE = "multi_scale_pixel_decoder"


@SEM_SEG_HEADS_REGISTRY.register()
class MaskFormerHead(nn.Module):
    _version = 2

    @configurable
    def __init__(
        self, *, num_classes: int, pixel_decoder: nn.Module, transformer_predictor: nn.Module,
        transformer_in_feature: str,
    ):  # fmt: skip
        super().__init__()
        if transformer_in_feature != MULTI_SCALE_FEATURE:
            raise ValueError(
                f"MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE must be '{MULTI_SCALE_FEATURE}' for the "
                f"masked-attention decoder, got '{transformer_in_feature}'"
            )
        self.num_classes = num_classes
        self.pixel_decoder = pixel_decoder
        self.predictor = transformer_predictor

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "num_classes": head.NUM_CLASSES,
            "pixel_decoder": build_pixel_decoder(cfg, input_shape),
            "transformer_in_feature": cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE,
            "transformer_predictor": build_transformer_decoder(cfg, head.CONVS_DIM, mask_classification=True),
        }

    def forward(self, features: dict[str, Tensor]) -> dict:
        mask_features, _, multi_scale_features = self.pixel_decoder(features)
        return self.predictor(multi_scale_features, mask_features)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # Checkpoints of the first MaskFormer release keep pixel-decoder weights directly
        # under the head. Decide by the keys themselves, not by version metadata: a
        # current checkpoint loaded from a plain dict has no metadata either (the
        # official version check then drops the pixel decoder, Mask2Former issue #95).
        renamed = 0
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            if not rest.startswith(("predictor.", "pixel_decoder.")):
                state_dict[prefix + "pixel_decoder." + rest] = state_dict.pop(key)
                renamed += 1
        if renamed:
            logger.warning(f"Moved {renamed} legacy keys under {prefix}pixel_decoder.")
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
