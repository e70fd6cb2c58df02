"""Video data. Importing the package registers the builtin datasets (YouTube-VIS 2019/2021,
OVIS, the synthetic set) under ``$DETECTRON2_DATASETS``, without reading any file."""

import os

from .build import build_ytvis_test_loader, build_ytvis_train_loader
from .builtin import datasets_root, register_all_builtin, register_synthetic_ytvis
from .mapper import YTVISDatasetMapper
from .ytvis import YTVISFormatError, load_ytvis_json, register_ytvis_instances, ytvis_metadata

__all__ = [
    "YTVISDatasetMapper",
    "YTVISFormatError",
    "build_ytvis_test_loader",
    "build_ytvis_train_loader",
    "datasets_root",
    "load_ytvis_json",
    "register_synthetic_ytvis",
    "register_ytvis_instances",
    "ytvis_metadata",
]

register_all_builtin(datasets_root())
register_synthetic_ytvis(os.path.join(datasets_root(), "synthetic_ytvis"))
