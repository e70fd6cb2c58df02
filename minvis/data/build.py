"""Data loaders over YouTube-VIS-format video datasets (detectron2's loaders, video dicts)."""

import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from detectron2.config import CfgNode
from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from torch.utils.data import DataLoader

from minvis.ytvis_format import YTVISFormatError

from .mapper import YTVISDatasetMapper

logger = logging.getLogger(__name__)

Mapper = Callable[[dict[str, Any]], Any]


def _has_usable_annotation(video: dict[str, Any]) -> bool:
    return any(not a.get("iscrowd", 0) for frame in video["annotations"] for a in frame)


def _json_files(names: list[str]) -> list[str]:
    return [str(getattr(MetadataCatalog.get(n), "json_file", n)) for n in names]


def get_video_dataset_dicts(
    names: Iterable[str], filter_empty: bool, *, require_objects: bool = False
) -> list[dict[str, Any]]:
    """The video dicts of the registered datasets ``names``, concatenated; ``filter_empty`` drops
    videos without a non-crowd annotation. ``require_objects`` (training) makes datasets without
    any an error at once, not a model that learnt only "no object" hours later."""
    names = list(names)
    videos = list(itertools.chain.from_iterable(DatasetCatalog.get(n) for n in names))
    if require_objects and not any(_has_usable_annotation(v) for v in videos):
        raise YTVISFormatError(
            f"{', '.join(_json_files(names))}: no object is annotated in any of its {len(videos)} "
            f"videos (datasets {', '.join(names)}); is this a test split or the wrong file?"
        )
    if filter_empty:
        kept = [v for v in videos if _has_usable_annotation(v)]
        logger.info(f"Removed {len(videos) - len(kept)} videos without annotations.")
        videos = kept
    if not videos:
        raise ValueError(f"No videos in {', '.join(names)}.")
    return videos


def build_ytvis_train_loader(cfg: CfgNode, mapper: Mapper | None = None) -> DataLoader:
    """Infinite training loader over ``DATASETS.TRAIN``: ``SOLVER.IMS_PER_BATCH`` mapped clips per batch."""
    if cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler":
        raise ValueError("RepeatFactorTrainingSampler does not support video datasets.")
    videos = get_video_dataset_dicts(
        cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS, require_objects=True
    )
    return build_detection_train_loader(
        cfg, mapper=mapper or YTVISDatasetMapper(cfg, is_train=True), dataset=videos
    )


def build_ytvis_test_loader(cfg: CfgNode, dataset_name: str, mapper: Mapper | None = None) -> DataLoader:
    """Inference loader over one dataset: one whole video per batch, in dataset order."""
    return build_detection_test_loader(
        get_video_dataset_dicts([dataset_name], filter_empty=False),
        mapper=mapper or YTVISDatasetMapper(cfg, is_train=False),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
