"""Data loaders over YouTube-VIS-format video datasets.

detectron2's own ``get_detection_dataset_dicts`` expects one image per dict, so the
video dicts are gathered here and handed to detectron2's loader builders.
"""

import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from torch.utils.data import DataLoader

from .mapper import YTVISDatasetMapper

__all__ = ["build_ytvis_test_loader", "build_ytvis_train_loader", "get_video_dataset_dicts"]

logger = logging.getLogger(__name__)

Mapper = Callable[[dict[str, Any]], Any]


def _has_usable_annotation(video: dict[str, Any]) -> bool:
    return any(not a.get("iscrowd", 0) for frame in video["annotations"] for a in frame)


def get_video_dataset_dicts(names: Iterable[str], filter_empty: bool) -> list[dict[str, Any]]:
    """The video dicts of the registered datasets ``names``, concatenated.

    With ``filter_empty`` (``DATALOADER.FILTER_EMPTY_ANNOTATIONS``), videos without a
    non-crowd annotation in any frame are dropped, as officially.
    """
    names = list(names)
    videos = list(itertools.chain.from_iterable(DatasetCatalog.get(n) for n in names))
    if filter_empty:
        kept = [v for v in videos if _has_usable_annotation(v)]
        logger.info(f"Removed {len(videos) - len(kept)} videos without annotations.")
        videos = kept
    if not videos:
        raise ValueError(f"No videos in {', '.join(names)}.")
    return videos


def build_ytvis_train_loader(cfg: CfgNode, mapper: Mapper | None = None) -> DataLoader:
    """Infinite training loader over ``DATASETS.TRAIN``: batches of mapped clips.

    ``mapper`` defaults to ``YTVISDatasetMapper(cfg, is_train=True)``. Batch size is
    ``SOLVER.IMS_PER_BATCH`` (videos, across all processes); the sampler is
    ``DATALOADER.SAMPLER_TRAIN`` (``TrainingSampler`` or ``RandomSubsetTrainingSampler``;
    the category-frequency one needs image dicts).
    """
    if cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler":
        raise ValueError("RepeatFactorTrainingSampler does not support video datasets.")
    videos = get_video_dataset_dicts(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    return build_detection_train_loader(
        cfg, mapper=mapper or YTVISDatasetMapper(cfg, is_train=True), dataset=videos
    )


def build_ytvis_test_loader(cfg: CfgNode, dataset_name: str, mapper: Mapper | None = None) -> DataLoader:
    """Inference loader over one dataset: one whole video per batch, in dataset order.

    ``mapper`` defaults to ``YTVISDatasetMapper(cfg, is_train=False)``.
    """
    return build_detection_test_loader(
        get_video_dataset_dicts([dataset_name], filter_empty=False),
        mapper=mapper or YTVISDatasetMapper(cfg, is_train=False),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
