"""Local train/val splits of a YouTube-VIS-format *train* annotation file, split by video.

The validation ground truth of YouTube-VIS and OVIS is not public, so local AP needs videos
held out of the train set (the paper's appendix E: 90/10). Ids are kept, so both files use
the original train image root.
"""

import math
import os
import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog

from minvis.ytvis_format import YTVISFormatError, is_int

from .ytvis import register_ytvis_instances

# Registered name suffix -> file name in the split directory, in split_videos' order.
SPLIT_FILES = {"localtrain": "train.json", "localval": "val.json"}
_CATEGORY_KEYS = ("thing_classes", "thing_colors", "thing_dataset_id_to_contiguous_id")


def num_val_videos(num_videos: int, val_fraction: float) -> int:
    """``val_fraction`` of ``num_videos``, rounded half up, kept in ``[1, num_videos - 1]``."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if num_videos < 2:
        raise ValueError(f"cannot split {num_videos} video(s) into non-empty train and val sets")
    return min(num_videos - 1, max(1, math.floor(num_videos * val_fraction + 0.5)))


def _video_ids(dataset: Mapping[str, Any]) -> list[int]:
    if not isinstance(dataset, Mapping):
        raise YTVISFormatError(f"expected a JSON object, got {type(dataset).__name__}")
    videos = dataset.get("videos")
    if not isinstance(videos, list):
        raise YTVISFormatError("no 'videos' list")
    ids = []
    for index, video in enumerate(videos):
        if not isinstance(video, dict) or not is_int(video.get("id")):
            raise YTVISFormatError(f"video entry {index} has no integer 'id'")
        ids.append(video["id"])
    duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)
    if duplicates:
        raise YTVISFormatError(f"duplicate video id(s) {duplicates[:10]}")
    return ids


def _annotation_video_ids(dataset: Mapping[str, Any], video_ids: set[int]) -> list[int]:
    annotations = dataset.get("annotations")
    if not isinstance(annotations, list):
        raise YTVISFormatError("no 'annotations' list (a test split cannot be split for evaluation)")
    owners = []
    for index, anno in enumerate(annotations):
        owner = anno.get("video_id") if isinstance(anno, dict) else None
        if owner not in video_ids:
            raise YTVISFormatError(f"annotation entry {index} refers to unknown video {owner!r}")
        owners.append(owner)
    return owners


def split_videos(
    dataset: Mapping[str, Any], val_fraction: float = 0.1, seed: int = 0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a YouTube-VIS-format dataset dict by video into (train, val) dicts, depending only
    on the set of video ids, the fraction and the seed. Annotations go with their video, other
    top-level keys are copied to both; ids and order are kept."""
    ids = _video_ids(dataset)
    owners = _annotation_video_ids(dataset, set(ids))
    val_ids = set(random.Random(seed).sample(sorted(ids), num_val_videos(len(ids), val_fraction)))

    def subset(in_val: bool) -> dict[str, Any]:
        return {
            **dataset,
            "videos": [v for v, i in zip(dataset["videos"], ids) if (i in val_ids) == in_val],
            "annotations": [
                a for a, owner in zip(dataset["annotations"], owners) if (owner in val_ids) == in_val
            ],
        }

    return subset(in_val=False), subset(in_val=True)


def _category_metadata(base: str | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(base, str):
        return dict(base)
    if base not in DatasetCatalog.list():
        raise KeyError(f"dataset {base!r} is not registered")
    meta = MetadataCatalog.get(base)
    return {key: getattr(meta, key) for key in _CATEGORY_KEYS if hasattr(meta, key)}


def register_split(
    name_prefix: str,
    base: str | Mapping[str, Any],
    split_dir: str | os.PathLike,
    image_root: str | os.PathLike,
) -> list[str]:
    """Register ``split_dir/{train,val}.json`` as ``{name_prefix}_local{train,val}`` (no file is
    read), with the categories of ``base``: a registered dataset's name or a metadata dict."""
    metadata = _category_metadata(base)
    names = []
    for suffix, file_name in SPLIT_FILES.items():
        name = f"{name_prefix}_{suffix}"
        register_ytvis_instances(name, metadata, os.path.join(split_dir, file_name), image_root)
        names.append(name)
    return names
