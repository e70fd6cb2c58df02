"""MinVIS: video instance segmentation by tracking the queries of an image model.

Importing the package registers, as the official release does, the meta-architecture
``VideoMaskFormer_frame`` (and, through :mod:`mask2former`, the image model) with
detectron2, and the builtin datasets (YouTube-VIS 2019/2021, OVIS, synthetic) under
``$DETECTRON2_DATASETS``. The tracker and inference modules themselves import no
detectron2 code.
"""

import mask2former  # noqa: F401  (registers the image model)

from . import data, video_model  # noqa: F401  (register datasets and VideoMaskFormer_frame)
from .config import add_minvis_config

__all__ = ["add_minvis_config"]
