"""The MinVIS model: ``VideoMaskFormer_frame`` (registered with detectron2 on import),
its supervised-matching loss, its config readers and its checkpoint loader.

Importing this package registers the meta-architecture and, through :mod:`mask2former`,
the image model (backbones, pixel decoder, transformer decoder, head).
"""

import mask2former  # noqa: F401  (registers the image model)

from .checkpoint import CheckpointLoadError, MinVISCheckpointer
from .video_model import VideoInputError, VideoMaskFormer_frame

__all__ = [
    "CheckpointLoadError",
    "MinVISCheckpointer",
    "VideoInputError",
    "VideoMaskFormer_frame",
]
