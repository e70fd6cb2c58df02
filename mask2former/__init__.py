"""The Mask2Former image model, registered into detectron2 under the official names."""

from . import modeling  # noqa: F401  (registers backbone, pixel decoder, decoder, head)
from .config import add_maskformer2_config

__all__ = ["add_maskformer2_config"]
