"""MinVIS: video instance segmentation by tracking the queries of an image model.

Importing the package registers the meta-architecture ``VideoMaskFormer_frame`` (and,
through :mod:`mask2former`, the image model) with detectron2, as the official release does.
"""

import mask2former  # noqa: F401  (registers the image model)

from . import video_model  # noqa: F401  (registers VideoMaskFormer_frame)
from .config import add_minvis_config

__all__ = ["add_minvis_config"]
