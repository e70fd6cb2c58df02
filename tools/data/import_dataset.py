#!/usr/bin/env python
"""Import your own video annotations into a YouTube-VIS-format JSON (see datasets/README.md).

``vos``: a DAVIS / YouTube-VOS folder, ``DIR/JPEGImages/<video>/<frame>.jpg`` and
``DIR/Annotations/<video>/<frame>.png`` (DAVIS: ``DIR/JPEGImages/480p/<video>/...``), each
annotation an indexed (palette) PNG whose pixel values are object ids (0 background, 255 void,
read as background); ``--classes`` names each object's category:
``{"<video>": {"<object id>": "<category>"}, "*": {"<object id>": "<category>"}}`` ("*" for
every video, a video's own entries first; a null category drops the object) or a YouTube-VOS
``meta.json``. A frame without an annotation PNG is *unannotated*.

``coco-video``: COCO-style per-frame instance annotations with track ids: ``images`` with a
video field (``video_id``, ``video`` or ``sequence``) and a frame index (``frame_id``,
``frame_index``, else the order of the file names), ``annotations`` with ``track_id``,
``instance_id`` or ``attributes.track_id`` and polygons or RLE. Every image is an annotated
frame.

The output has ``file_names`` relative to the image root (printed), compressed RLE or null
per frame, ``areas``, ``bboxes``, categories with ids from 1 (in the order the class map or
the COCO ids give) and colours. A video with unannotated frames lists its annotated frames in
``annotated_frames``; datasets registered through ``MINVIS_DATASETS`` train and evaluate on
those frames only. Bad input is one line naming the file (exit code 2).
"""

from __future__ import annotations

import argparse
import colorsys
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image, UnidentifiedImageError

from minvis.output_paths import OutputPathError, StagedOutputs, check_outputs, interrupt_on_sigterm
from minvis.ytvis_format import (
    YTVISFormatError,
    is_int,
    parse_json,
    validate_polygons,
    validate_rle,
)

BAD_INPUT = 2
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
VOID_ID = 255  # DAVIS: void / ignore pixels, read as background
DAVIS_LEVELS = ("480p", "Full-Resolution")
DEFAULT_SMALL = 16
VIDEO_KEYS = ("video_id", "video", "sequence")
FRAME_INDEX_KEYS = ("frame_id", "frame_index")


class InputError(YTVISFormatError):
    """Bad input; the message starts with the file it concerns."""


def natural_key(text: str) -> list[int | str]:
    """``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def category_colors(count: int) -> list[list[int]]:
    """Distinct, deterministic colours (golden-ratio hues)."""
    colors = []
    for i in range(count):
        r, g, b = colorsys.hsv_to_rgb((0.08 + i * 0.618033988749895) % 1.0, 0.7, 0.95)
        colors.append([round(255 * r), round(255 * g), round(255 * b)])
    return colors


def read_json_file(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    return parse_json(data, path)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(f"{path}: cannot read the image ({error})") from None


# ------------------------------------------------------------------------------ dataset
@dataclass
class Track:
    category: str
    segmentations: list[dict[str, Any] | None]  # compressed RLE per frame, None where absent
    iscrowd: int = 0


@dataclass
class Video:
    file_names: list[str]  # relative to the image root
    width: int
    height: int
    annotated: list[bool]  # per frame
    tracks: list[Track] = field(default_factory=list)


def encode(mask: np.ndarray) -> dict[str, Any] | None:
    """Compressed RLE of a bool mask, None if it is empty."""
    if not mask.any():
        return None
    rle = mask_util.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def to_ytvis(videos: list[Video], categories: list[str], source_format: str) -> dict[str, Any]:
    """The YouTube-VIS dataset dict: video ids 1..N and annotation ids 1..M in order."""
    category_ids = {name: i for i, name in enumerate(categories, start=1)}
    out_videos, annotations = [], []
    for video_id, video in enumerate(videos, start=1):
        entry: dict[str, Any] = {
            "id": video_id,
            "width": video.width,
            "height": video.height,
            "length": len(video.file_names),
            "file_names": video.file_names,
        }
        if not all(video.annotated):
            entry["annotated_frames"] = [t for t, annotated in enumerate(video.annotated) if annotated]
        out_videos.append(entry)
        for track in video.tracks:
            areas = [int(mask_util.area(s)) if s else None for s in track.segmentations]
            bboxes = [[float(v) for v in mask_util.toBbox(s)] if s else None for s in track.segmentations]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": video_id,
                    "category_id": category_ids[track.category],
                    "iscrowd": track.iscrowd,
                    "segmentations": track.segmentations,
                    "areas": areas,
                    "bboxes": bboxes,
                }
            )
    colors = category_colors(len(categories))
    return {
        "info": {"description": f"imported by tools/data/import_dataset.py from {source_format}"},
        "videos": out_videos,
        "categories": [
            {"id": i, "name": name, "supercategory": "object", "color": color}
            for i, (name, color) in enumerate(zip(categories, colors), start=1)
        ],
        "annotations": annotations,
    }


# ------------------------------------------------------------------------------ vos
ClassMap = dict[str, dict[int, str | None]]  # video ("*": every video) -> object id -> category


def read_class_map(path: Path) -> tuple[ClassMap, list[str]]:
    """The class map and the category names in order of first appearance ("*" first)."""
    data = read_json_file(path)
    videos = data.get("videos") if isinstance(data, dict) else None
    if isinstance(videos, dict) and all(isinstance(v, dict) and "objects" in v for v in videos.values()):
        data = {  # a YouTube-VOS meta.json
            name: {oid: (obj or {}).get("category") for oid, obj in (video["objects"] or {}).items()}
            for name, video in videos.items()
        }
    usage = '{"<video>": {"<object id>": "<category>"}, "*": {...}}'
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object {usage}")
    class_map: ClassMap = {}
    names: dict[str, None] = {}
    for video in sorted(data, key=lambda key: key != "*"):  # "*" first, then file order
        entries = data[video]
        if not isinstance(entries, dict):
            raise InputError(f"{path}: entry {video!r} must map object ids to category names ({usage})")
        class_map[video] = {}
        for key, name in entries.items():
            if not (key.isdigit() and 0 < int(key) < VOID_ID):
                raise InputError(f"{path}: entry {video!r}: object id {key!r} is not an integer in 1..254")
            if name is not None and not (isinstance(name, str) and name.strip()):
                raise InputError(f"{path}: entry {video!r}: object {key}: category must be a name or null")
            class_map[video][int(key)] = name
            if name is not None:
                names.setdefault(name)
    if not names:
        raise InputError(f"{path}: no category name in the class map")
    return class_map, list(names)


def vos_folders(root: Path, level: str | None) -> tuple[Path, Path]:
    """(frames root, annotations root): ``JPEGImages`` and ``Annotations``, DAVIS's level below."""
    images, annotations = root / "JPEGImages", root / "Annotations"
    for folder in (images, annotations):
        if not folder.is_dir():
            raise InputError(
                f"{folder}: no such folder (the vos layout is DIR/JPEGImages/<video>/<frame>.jpg and "
                "DIR/Annotations/<video>/<frame>.png)"
            )
    levels = [lv for lv in DAVIS_LEVELS if (images / lv).is_dir()]
    if level is None and levels:
        level = levels[0]
    if level is not None:
        images, annotations = images / level, annotations / level
        for folder in (images, annotations):
            if not folder.is_dir():
                raise InputError(f"{folder}: no such folder (DAVIS level {level})")
    return images, annotations


def listed_files(folder: Path, extensions: Iterable[str]) -> list[Path]:
    extensions = tuple(extensions)
    try:
        files = [p for p in folder.iterdir() if p.suffix.lower() in extensions and p.is_file()]
    except OSError as error:
        raise InputError(f"{folder}: cannot list ({error.strerror or error})") from None
    return sorted(files, key=lambda p: natural_key(p.name))


def read_video_list(path: Path, available: list[str]) -> list[str]:
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read ({getattr(error, 'strerror', None) or error})") from None
    unknown = [name for name in names if name not in available]
    if unknown:
        raise InputError(f"{path}: video {unknown[0]!r} has no folder of frames")
    return list(dict.fromkeys(names))


def read_index_png(path: Path, size: tuple[int, int], frame: Path) -> np.ndarray:
    """The object ids of an annotation PNG, [H, W] uint8."""
    try:
        with Image.open(path) as image:
            if image.mode != "P":
                raise InputError(
                    f"{path}: not an indexed PNG (mode {image.mode}); annotations must be palette "
                    "(mode P) images whose pixel values are object ids"
                )
            if image.size != size:
                raise InputError(
                    f"{path}: {image.size[0]}x{image.size[1]} (WxH) but its frame {frame} is "
                    f"{size[0]}x{size[1]}"
                )
            return np.array(image)
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(f"{path}: cannot read the image ({error})") from None


def frame_sizes(frames: list[Path]) -> tuple[int, int]:
    """The one (width, height) of a video's frames."""
    first = image_size(frames[0])
    for frame in frames[1:]:
        size = image_size(frame)
        if size != first:
            raise InputError(
                f"{frame}: {size[0]}x{size[1]} (WxH) but {frames[0].name} is {first[0]}x{first[1]}; "
                "all frames of a video must have one size"
            )
    return first


def import_vos_video(
    name: str, images: Path, annotations: Path, class_map: ClassMap, classes_path: Path
) -> Video:
    frame_dir, annotation_dir = images / name, annotations / name
    frames = listed_files(frame_dir, FRAME_EXTENSIONS)
    if not frames:
        raise InputError(f"{frame_dir}: no frames ({', '.join(FRAME_EXTENSIONS)})")
    index: dict[str, int] = {}
    for t, frame in enumerate(frames):
        if frame.stem in index:
            raise InputError(f"{frame}: two frames named {frame.stem} ({frames[index[frame.stem]].name})")
        index[frame.stem] = t
    width, height = frame_sizes(frames)
    pngs = listed_files(annotation_dir, (".png",)) if annotation_dir.is_dir() else []
    classes = {**class_map.get("*", {}), **class_map.get(name, {})}
    masks: dict[int, list[dict[str, Any] | None]] = {}
    annotated = [False] * len(frames)
    for png in pngs:
        t = index.get(png.stem)
        if t is None:
            raise InputError(f"{png}: no frame {png.stem} ({'/'.join(FRAME_EXTENSIONS)}) in {frame_dir}")
        ids = read_index_png(png, (width, height), frames[t])
        annotated[t] = True
        for object_id in np.unique(ids).tolist():
            if object_id in (0, VOID_ID):
                continue
            if object_id not in classes:
                raise InputError(
                    f"{png}: object id {object_id} is not in the class map {classes_path} "
                    f"(neither under {name!r} nor '*')"
                )
            if classes[object_id] is None:
                continue  # dropped by the class map
            masks.setdefault(object_id, [None] * len(frames))[t] = encode(ids == object_id)
    tracks = [Track(classes[oid], segms) for oid, segms in sorted(masks.items())]  # type: ignore[arg-type]
    file_names = [f"{name}/{frame.name}" for frame in frames]
    return Video(file_names, width, height, annotated, tracks)


def import_vos(
    root: Path, classes_path: Path, level: str | None, video_list: Path | None
) -> tuple[dict[str, Any], Path]:
    class_map, categories = read_class_map(classes_path)
    images, annotations = vos_folders(root, level)
    available = sorted((p.name for p in images.iterdir() if p.is_dir()), key=natural_key)
    for folder in sorted(annotations.iterdir()):
        if folder.is_dir() and folder.name not in available:
            raise InputError(
                f"{folder}: annotations of video {folder.name} but no folder {images / folder.name}"
            )
    names = read_video_list(video_list, available) if video_list else available
    if not names:
        raise InputError(f"{images}: no video folders")
    videos = [import_vos_video(n, images, annotations, class_map, classes_path) for n in names]
    return to_ytvis(videos, categories, "vos"), images


# ------------------------------------------------------------------------------ coco-video
def _first_key(entry: dict[str, Any], keys: Iterable[str]) -> Any:
    return next((entry[k] for k in keys if entry.get(k) is not None), None)


def _track_id(ann: dict[str, Any]) -> Any:
    attributes = ann.get("attributes")
    nested = attributes.get("track_id") if isinstance(attributes, dict) else None
    return _first_key(ann, ("track_id", "instance_id")) if nested is None else nested


def _segmentation_rle(segm: Any, height: int, width: int, where: str) -> dict[str, Any] | None:
    """A compressed RLE (None if empty) of polygons or an RLE, validated first."""
    if isinstance(segm, list):
        # as the loader: polygons of fewer than three points are dropped
        segm = [p for p in segm if not (isinstance(p, list) and (len(p) < 6 or len(p) % 2))]
        if not segm:
            return None
        validate_polygons(segm, height, width, where)
        rle = mask_util.merge(mask_util.frPyObjects(segm, height, width))
    elif isinstance(segm, dict):
        validate_rle(segm, where, compressed_only=False)
        if list(segm["size"]) != [height, width]:
            raise YTVISFormatError(
                f"{where}: RLE size {segm['size']} differs from the image's [{height}, {width}]"
            )
        rle = mask_util.frPyObjects(segm, height, width) if isinstance(segm["counts"], list) else dict(segm)
    else:
        raise YTVISFormatError(f"{where}: no segmentation (polygons or RLE)")
    if isinstance(rle["counts"], str):
        rle["counts"] = rle["counts"].encode("ascii")
    if mask_util.area(rle) == 0:
        return None
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _coco_categories(data: dict[str, Any], src: Path) -> dict[Any, str]:
    categories: dict[Any, str] = {}
    for index, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise InputError(f"{src}: category {index} needs an integer id and a name")
        if cat["id"] in categories:
            raise InputError(f"{src}: category {index}: duplicate id {cat['id']}")
        if cat["name"] in categories.values():
            raise InputError(f"{src}: category {index}: duplicate name {cat['name']!r}")
        categories[cat["id"]] = cat["name"]
    return dict(sorted(categories.items()))


def _coco_videos(data: dict[str, Any], src: Path) -> dict[Any, list[dict[str, Any]]]:
    """Images by video key, each video's in frame order."""
    by_video: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    seen: set[Any] = set()
    for index, image in enumerate(data["images"]):
        where = f"{src}: image {index} (id {image.get('id') if isinstance(image, dict) else None})"
        if (
            not isinstance(image, dict)
            or image.get("id") is None
            or not isinstance(image.get("file_name"), str)
        ):
            raise InputError(f"{where}: needs an id and a file_name")
        if image["id"] in seen:
            raise InputError(f"{where}: duplicate image id")
        seen.add(image["id"])
        video = _first_key(image, VIDEO_KEYS)
        if video is None or isinstance(video, dict | list):
            raise InputError(f"{where}: no video field ({', '.join(VIDEO_KEYS)})")
        frame = _first_key(image, FRAME_INDEX_KEYS)
        if frame is not None and not is_int(frame):
            raise InputError(f"{where}: frame index {frame!r} is not an integer")
        by_video[video].append(image)
    ordered = {}
    for video, images in sorted(by_video.items(), key=lambda item: natural_key(str(item[0]))):
        indexed = [_first_key(image, FRAME_INDEX_KEYS) is not None for image in images]
        if any(indexed) and not all(indexed):
            raise InputError(f"{src}: video {video!r}: some images have a frame index and some not")
        if all(indexed):
            images = sorted(images, key=lambda image: _first_key(image, FRAME_INDEX_KEYS))
            frames = [_first_key(image, FRAME_INDEX_KEYS) for image in images]
            for a, b, frame in zip(images, images[1:], frames[1:]):
                if _first_key(a, FRAME_INDEX_KEYS) == frame:
                    raise InputError(
                        f"{src}: images {a['id']} and {b['id']} are both frame {frame} of video {video!r}"
                    )
        else:
            images = sorted(images, key=lambda image: natural_key(image["file_name"]))
        ordered[video] = images
    return ordered


def import_coco_video(json_path: Path, images_root: Path) -> tuple[dict[str, Any], Path]:
    data = read_json_file(json_path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise InputError(f"{json_path}: expected a COCO-style object with an {key!r} list")
    categories = _coco_categories(data, json_path)
    grouped = _coco_videos(data, json_path)
    where_image: dict[Any, tuple[int, int]] = {}  # image id -> (video index, frame)
    videos: list[Video] = []
    for v, images in enumerate(grouped.values()):
        paths = [images_root / image["file_name"] for image in images]
        for image, path in zip(images, paths):
            if not path.is_file():
                raise InputError(f"{path}: no such image (file_name of image {image['id']} in {json_path})")
        width, height = frame_sizes(paths)
        for image, path in zip(images, paths):
            if (image.get("width"), image.get("height")) not in ((None, None), (width, height)):
                raise InputError(
                    f"{path}: {width}x{height} (WxH) but image {image['id']} of {json_path} says "
                    f"{image.get('width')}x{image.get('height')}"
                )
        for t, image in enumerate(images):
            where_image[image["id"]] = (v, t)
        file_names = [Path(image["file_name"]).as_posix() for image in images]
        videos.append(Video(file_names, width, height, [True] * len(images)))

    tracks: dict[tuple[int, Any], Track] = {}
    first_seen: dict[tuple[int, Any], int] = {}  # track -> its first annotation's index
    in_frame: dict[tuple[Any, Any], int] = {}  # (image id, track id) -> annotation index
    for index, ann in enumerate(data["annotations"]):
        where = f"{json_path}: annotation {index} (id {ann.get('id') if isinstance(ann, dict) else None})"
        if not isinstance(ann, dict) or ann.get("image_id") not in where_image:
            raise InputError(
                f"{where}: unknown image_id {ann.get('image_id') if isinstance(ann, dict) else None}"
            )
        if ann.get("category_id") not in categories:
            raise InputError(f"{where}: unknown category_id {ann.get('category_id')!r}")
        track_id = _track_id(ann)
        if track_id is None or isinstance(track_id, dict | list | bool):
            raise InputError(f"{where}: no track id (track_id, instance_id or attributes.track_id)")
        previous = in_frame.setdefault((ann["image_id"], track_id), index)
        if previous != index:
            raise InputError(
                f"{where}: duplicate track id {track_id!r} in image {ann['image_id']} "
                f"(annotation {previous} has it too)"
            )
        v, t = where_image[ann["image_id"]]
        video, category = videos[v], categories[ann["category_id"]]
        track = tracks.get((v, track_id))
        if track is None:
            track = tracks[(v, track_id)] = Track(category, [None] * len(video.file_names))
            first_seen[(v, track_id)] = index
        elif track.category != category:
            raise InputError(
                f"{where}: track {track_id!r} is {category!r} here but {track.category!r} in "
                f"annotation {first_seen[(v, track_id)]}"
            )
        track.segmentations[t] = _segmentation_rle(ann.get("segmentation"), video.height, video.width, where)
        track.iscrowd = max(track.iscrowd, int(bool(ann.get("iscrowd", 0))))
    for (v, _), track in sorted(tracks.items(), key=lambda item: (item[0][0], natural_key(str(item[0][1])))):
        if any(track.segmentations):
            videos[v].tracks.append(track)
    return to_ytvis(videos, list(categories.values()), "coco-video"), images_root


# ------------------------------------------------------------------------------ summary
def summary(dataset: dict[str, Any], small: int) -> list[str]:
    videos, annotations = dataset["videos"], dataset["annotations"]
    frames = sum(v["length"] for v in videos)
    annotated = {v["id"]: set(v.get("annotated_frames", range(v["length"]))) for v in videos}
    num_annotated = sum(len(a) for a in annotated.values())
    occupied, small_frames = defaultdict(set), set()
    tracks, instances = Counter(), Counter()
    for ann in annotations:
        tracks[ann["category_id"]] += 1
        for t, area in enumerate(ann["areas"]):
            if area:
                instances[ann["category_id"]] += 1
                occupied[ann["video_id"]].add(t)
                if area < small:
                    small_frames.add((ann["video_id"], t))
    empty = sum(len(frames_ - occupied[vid]) for vid, frames_ in annotated.items())
    unannotated_videos = sum(1 for a in annotated.values() if not a)
    lines = [
        f"videos: {len(videos)}"
        + (f" ({unannotated_videos} without any annotated frame)" if unannotated_videos else ""),
        f"frames: {frames}, annotated: {num_annotated} ({100 * num_annotated / max(frames, 1):.1f}%)",
        f"annotated frames without any object: {empty}",
        f"frames with a mask smaller than {small} pixels: {len(small_frames)}",
    ]
    width = max([len("category"), *(len(c["name"]) for c in dataset["categories"])])
    lines.append(f"{'category':<{width}}  {'tracks':>6}  {'instances':>9}")
    for cat in dataset["categories"]:
        lines.append(f"{cat['name']:<{width}}  {tracks[cat['id']]:>6}  {instances[cat['id']]:>9}")
    return lines


# ------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, required=True, help="the YouTube-VIS-format JSON to write")
    common.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    common.add_argument(
        "--small",
        type=int,
        default=DEFAULT_SMALL,
        metavar="N",
        help="report frames with masks under N pixels",
    )
    vos = formats.add_parser("vos", parents=[common], help="DAVIS / YouTube-VOS folders of palette PNGs")
    vos.add_argument("--root", type=Path, required=True, help="folder holding JPEGImages/ and Annotations/")
    vos.add_argument("--classes", type=Path, required=True, help="class map JSON (or YouTube-VOS meta.json)")
    vos.add_argument("--resolution", choices=DAVIS_LEVELS, help="DAVIS level (default: 480p if present)")
    vos.add_argument(
        "--videos",
        type=Path,
        help="import only these videos (one name a line, e.g. DAVIS ImageSets)",
    )
    coco = formats.add_parser("coco-video", parents=[common], help="COCO-style frames with track ids")
    coco.add_argument("--json", type=Path, required=True, help="COCO-style annotation file")
    coco.add_argument(
        "--images", type=Path, required=True, help="folder the images' file_name are relative to"
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    if args.format == "vos":
        inputs = [
            args.root / "JPEGImages",
            args.root / "Annotations",
            args.classes,
            *filter(None, [args.videos]),
        ]
    else:
        inputs = [args.json, args.images]
    if args.out.is_dir():
        raise OutputPathError(f"{args.out} is a folder; --out names the JSON file to write")
    existing = check_outputs([args.out], inputs, overwrite=args.overwrite)
    if args.format == "vos":
        dataset, image_root = import_vos(args.root, args.classes, args.resolution, args.videos)
    else:
        dataset, image_root = import_coco_video(args.json, args.images)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with interrupt_on_sigterm(), StagedOutputs([args.out], replaces=existing) as staged:
        staged.path(args.out).write_text(json.dumps(dataset, separators=(",", ":")), encoding="utf-8")
    log(f"wrote {args.out} (image root: {image_root})")
    for line in summary(dataset, args.small):
        log(line)
    log(f'register it: MINVIS_DATASETS="NAME={args.out}:{image_root}" (see datasets/README.md)')
    return dataset


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (YTVISFormatError, OutputPathError, OSError) as error:
        print(f"import_dataset: error: {error}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        print("import_dataset: interrupted; nothing written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
