"""Read YouTube-VIS-format annotation files (YouTube-VIS 2019/2021, OVIS, custom sets).

A YouTube-VIS JSON has ``videos`` (``id``, ``file_names``, ``length``, ``height``, ``width``),
``categories`` (``id``, ``name``) and, except for test splits, ``annotations``: one per track,
with ``video_id``, ``category_id``, ``iscrowd`` and per-frame ``segmentations`` (RLE, polygons
or null), ``bboxes``, ``areas``.
"""

import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from functools import partial
from typing import Any

import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

from minvis.ytvis_format import YTVISFormatError, parse_json, validate_polygons, validate_rle

logger = logging.getLogger(__name__)


def ytvis_metadata(categories: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Detectron2 metadata of a category table (dicts with ``id``, ``name``, ``color``); the
    sorted ids map to 0..K-1."""
    cats = sorted(categories, key=lambda c: c["id"])
    meta: dict[str, Any] = {
        "thing_classes": [c["name"] for c in cats],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(cats)},
    }
    if cats and all("color" in c for c in cats):
        meta["thing_colors"] = [c["color"] for c in cats]
    return meta


def _category_map(dataset_name: str | None, categories: list[dict[str, Any]], where: str) -> dict[int, int]:
    """Dataset category id -> contiguous id: the registered metadata's map (builtin datasets),
    else the JSON's categories, stored in the metadata."""
    from_json = ytvis_metadata(categories)
    if dataset_name is None:
        return from_json["thing_dataset_id_to_contiguous_id"]
    meta = MetadataCatalog.get(dataset_name)
    if not hasattr(meta, "thing_dataset_id_to_contiguous_id"):
        meta.set(**from_json)
        return from_json["thing_dataset_id_to_contiguous_id"]
    id_map: dict[int, int] = meta.thing_dataset_id_to_contiguous_id
    for cat in categories:
        if cat["id"] in id_map and meta.thing_classes[id_map[cat["id"]]] != cat["name"]:
            logger.warning(
                f"{where}: category {cat['id']} is {cat['name']!r} in the file but "
                f"{meta.thing_classes[id_map[cat['id']]]!r} in the metadata of {dataset_name}."
            )
    return id_map


def _frame_segmentation(segm: Any, height: int, width: int, where: str) -> Any:
    """Validate one frame's segmentation; None when absent or empty. Uncompressed RLE becomes
    compressed; polygons with fewer than 3 points are dropped (official behaviour)."""
    if not segm:
        return None
    if isinstance(segm, dict):
        validate_rle(segm, where, compressed_only=False)  # before any pycocotools call
        if list(segm["size"]) != [height, width]:
            raise YTVISFormatError(
                f"{where}: RLE size {segm['size']} differs from the video's [{height}, {width}]."
            )
        if isinstance(segm["counts"], list):
            return mask_util.frPyObjects(segm, height, width)
        return segm
    if isinstance(segm, list) and all(isinstance(p, list) for p in segm):
        polygons = [p for p in segm if len(p) % 2 == 0 and len(p) >= 6]
        if polygons:
            validate_polygons(polygons, height, width, where)
        return polygons or None
    raise YTVISFormatError(f"{where}: unsupported segmentation of type {type(segm).__name__}.")


def _bbox_of(segm: Any, height: int, width: int) -> list[float]:
    rle = segm if isinstance(segm, dict) else mask_util.merge(mask_util.frPyObjects(segm, height, width))
    return mask_util.toBbox(rle).tolist()


def _per_frame_list(anno: dict[str, Any], key: str, length: int, where: str) -> list[Any]:
    values = anno.get(key) or [None] * length
    if len(values) != length:
        raise YTVISFormatError(f"{where}: {len(values)} {key} for a video of {length} frames.")
    return values


def _video_record(video: dict[str, Any], image_root: str, where: str) -> dict[str, Any]:
    try:
        file_names, height, width = video["file_names"], video["height"], video["width"]
    except KeyError as e:
        raise YTVISFormatError(f"{where}: missing key {e}.") from None
    length = video.get("length", len(file_names))
    if not file_names or not length:
        raise YTVISFormatError(f"{where}: the video has no frames (length {length}).")
    if len(file_names) != length:
        raise YTVISFormatError(f"{where}: {len(file_names)} file_names but length {length}.")
    return {
        "file_names": [os.path.join(image_root, f) for f in file_names],
        "height": height,
        "width": width,
        "length": length,
        "video_id": video["id"],
    }


def _frame_objects(
    anno: dict[str, Any],
    record: dict[str, Any],
    id_map: dict[int, int],
    keys: list[str],
    where: str,
) -> list[dict[str, Any] | None]:
    """The per-frame instance dicts of one track (None where it is absent)."""
    length, height, width = record["length"], record["height"], record["width"]
    if anno.get("category_id") not in id_map:
        raise YTVISFormatError(f"{where}: unknown category_id {anno.get('category_id')!r}.")
    segms = _per_frame_list(anno, "segmentations", length, where)
    bboxes = _per_frame_list(anno, "bboxes", length, where)
    objects: list[dict[str, Any] | None] = []
    for frame, (segm, bbox) in enumerate(zip(segms, bboxes, strict=True)):
        segm = _frame_segmentation(segm, height, width, f"{where} frame {frame}")
        if segm is None:
            objects.append(None)
            continue
        obj = {k: anno[k] for k in keys if k in anno}
        obj.update(
            iscrowd=anno.get("iscrowd", 0),
            category_id=id_map[anno["category_id"]],
            segmentation=segm,
            bbox=bbox if bbox else _bbox_of(segm, height, width),
            bbox_mode=BoxMode.XYWH_ABS,
        )
        objects.append(obj)
    return objects


def _read_annotations(json_file: str) -> dict[str, Any]:
    """The parsed file; a missing one names its absolute path and how to provide it."""
    if "://" not in json_file and not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"dataset annotation file {os.path.abspath(json_file)} does not exist. Datasets are read "
            f"from $DETECTRON2_DATASETS (now {os.getenv('DETECTRON2_DATASETS', 'unset: ./datasets')}); "
            "see datasets/README.md, or write the synthetic set with tools/data/make_synthetic_ytvis.py"
        )
    with PathManager.open(json_file, "rb") as f:
        data = parse_json(f.read(), json_file)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise YTVISFormatError(f"{json_file}: expected an object with a 'videos' list")
    return data


def load_ytvis_json(
    json_file: str | os.PathLike,
    image_root: str | os.PathLike,
    dataset_name: str | None = None,
    extra_annotation_keys: list[str] | None = None,
    check_files: bool = True,
) -> list[dict[str, Any]]:
    """Load a YouTube-VIS-format JSON into one detectron2 dataset dict per video, sorted by id.

    Each dict has ``file_names`` (full paths), ``height``, ``width``, ``length``, ``video_id``
    and ``annotations``: per frame, the instance dicts of the tracks present in it, with ``id``
    (the track id), contiguous ``category_id``, ``iscrowd``, ``segmentation`` (compressed RLE or
    polygons), ``bbox`` and ``bbox_mode``. ``check_files`` makes a missing frame fail here rather
    than in a loader worker mid-training. A malformed file raises :class:`YTVISFormatError`
    naming the video (and frame).
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    data = _read_annotations(json_file)
    id_map = _category_map(dataset_name, data.get("categories") or [], json_file)
    keys = ["id", *(extra_annotation_keys or [])]

    records: dict[int, dict[str, Any]] = {}
    for video in sorted(data["videos"], key=lambda v: v["id"]):
        where = f"{json_file}: video {video.get('id')}"
        record = _video_record(video, image_root, where)
        if check_files:
            for frame, path in enumerate(record["file_names"]):
                if not PathManager.isfile(path):
                    raise YTVISFormatError(f"{where} frame {frame}: image file {path} does not exist.")
        record["annotations"] = [[] for _ in range(record["length"])]
        records[record["video_id"]] = record

    tracks: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for anno in data.get("annotations") or []:
        tracks[anno.get("video_id")].append(anno)
    for video_id, annos in tracks.items():
        if video_id not in records:
            raise YTVISFormatError(
                f"{json_file}: annotation {annos[0].get('id')} refers to unknown video {video_id}."
            )
        record = records[video_id]
        for anno in annos:
            where = f"{json_file}: video {video_id} annotation {anno.get('id')}"
            objects = _frame_objects(anno, record, id_map, keys, where)
            for frame_annos, obj in zip(record["annotations"], objects, strict=True):
                if obj is not None:
                    frame_annos.append(obj)

    logger.info(f"Loaded {len(records)} videos in YouTube-VIS format from {json_file}")
    return list(records.values())


def register_ytvis_instances(
    name: str,
    metadata: dict[str, Any],
    json_file: str | os.PathLike,
    image_root: str | os.PathLike,
) -> None:
    """Register a YouTube-VIS-format dataset under ``name``; nothing is read until first use.

    ``metadata`` may be empty, to take the classes from the JSON when it is loaded, e.g.
    ``register_ytvis_instances("my_vis_train", {}, "my/train.json", "my/train/JPEGImages")``.
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    DatasetCatalog.register(name, partial(load_ytvis_json, json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="ytvis", **metadata
    )
