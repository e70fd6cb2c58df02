"""Your own datasets, registered by name from a YouTube-VIS JSON and an image root, without code.

``MINVIS_DATASETS="NAME=JSON:IMAGE_ROOT,NAME2=JSON2:IMAGE_ROOT2"`` registers each NAME when
``minvis.data`` registers the builtin datasets (so in ``train_net.py``, the demo and every
process of a multi-process run), with the JSON's category names and colours as metadata, read
when first used (registration reads no file). Relative paths are relative to the working
directory at registration. In Python: :func:`register_imported_dataset`.

Videos with ``annotated_frames`` (sparse annotation, written by ``tools/data/import_dataset.py``)
are loaded with their annotated frames only: training samples only frames someone annotated
(the loader reads a null segmentation as "object absent", which on an unannotated frame would
teach the model that nothing is there), and inference runs on the same frames, which the
metric compares with the annotated frames of the ground truth.
"""

import logging
import os
import re
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.utils.colormap import colormap

from minvis.ytvis_format import YTVISFormatError, check_annotated_frames, is_int, parse_json

from .ytvis import load_ytvis_json, ytvis_metadata

logger = logging.getLogger(__name__)

ENV_VAR = "MINVIS_DATASETS"
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_CATEGORY_KEYS = ("thing_classes", "thing_dataset_id_to_contiguous_id", "thing_colors")
_ANNOTATED_FRAMES = b'"annotated_frames"'


class DatasetSpecError(YTVISFormatError):
    """A malformed ``MINVIS_DATASETS`` entry."""


def parse_dataset_specs(text: str) -> list[tuple[str, str, str] | tuple[str | None, DatasetSpecError]]:
    """``NAME=JSON:IMAGE_ROOT`` entries separated by commas, as (name, json, image root), or
    (name or None, error) for a malformed entry."""
    entries: list[Any] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, paths = (s.strip() for s in item.partition("="))
        json_file, _, image_root = (s.strip() for s in paths.partition(":"))
        error = None
        if not _NAME.fullmatch(name):
            error = f"{ENV_VAR}: entry {item!r}: expected NAME=JSON:IMAGE_ROOT (NAME: letters, digits, _.-)"
        elif not json_file or not image_root:
            error = f"{ENV_VAR}: entry {item!r}: expected NAME=JSON:IMAGE_ROOT"
        if error is None:
            entries.append((name, json_file, image_root))
        else:
            entries.append((name if _NAME.fullmatch(name) else None, DatasetSpecError(error)))
    return entries


def _default_colors(count: int) -> list[list[int]]:
    palette = colormap(rgb=True, maximum=255).astype(int).tolist()
    return [palette[i % len(palette)] for i in range(count)]


def _read_json(json_file: str, dataset_name: str) -> Any:
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"dataset annotation file {os.path.abspath(json_file)} of {dataset_name} does not exist "
            f"(registered by {ENV_VAR} or register_imported_dataset)"
        )
    return parse_json(Path(json_file).read_bytes(), json_file)


def category_metadata(json_file: str, dataset_name: str) -> dict[str, Any]:
    """``thing_classes``, ``thing_dataset_id_to_contiguous_id`` and ``thing_colors`` of a
    YouTube-VIS JSON's categories (colours from the file, else detectron2's colormap)."""
    data = _read_json(json_file, dataset_name)
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list) or not categories:
        raise YTVISFormatError(f"{json_file}: no 'categories' list")
    for index, cat in enumerate(categories):
        if not isinstance(cat, dict) or not is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise YTVISFormatError(f"{json_file}: category {index} needs an integer id and a name")
    metadata = ytvis_metadata(categories)
    if "thing_colors" not in metadata:
        metadata["thing_colors"] = _default_colors(len(categories))
    return metadata


class _JsonMetadata(Metadata):
    """Metadata whose category keys are read from the dataset's JSON when first asked for
    (or whose every use raises ``_error``, for a malformed ``MINVIS_DATASETS`` entry)."""

    def __getattr__(self, key: str) -> Any:
        error = self.__dict__.get("_error")
        if error is not None and (key in _CATEGORY_KEYS or key in ("json_file", "image_root")):
            raise error
        if key in _CATEGORY_KEYS and not self.__dict__.get("_categories_read"):
            # set directly: Metadata.__setattr__ would look the key up again
            self.__dict__.update(category_metadata(self.__dict__["json_file"], self.name))
            self.__dict__["_categories_read"] = True
            return getattr(self, key)
        return super().__getattr__(key)


def _annotated_frames(json_file: str) -> dict[int, list[int]]:
    """Video id -> annotated frames, for the videos with ``annotated_frames``."""
    text = Path(json_file).read_bytes()
    if _ANNOTATED_FRAMES not in text:
        return {}
    data = parse_json(text, json_file)
    videos = data.get("videos") if isinstance(data, dict) else None
    frames: dict[int, list[int]] = {}
    for video in videos if isinstance(videos, list) else []:
        if isinstance(video, dict) and video.get("annotated_frames") is not None:
            frames[video.get("id")] = video["annotated_frames"]  # type: ignore[index]
    return frames


def annotated_frames_only(
    videos: list[dict[str, Any]], annotated: Mapping[int, list[int]], json_file: str
) -> list[dict[str, Any]]:
    """The video dicts of :func:`load_ytvis_json` cut to their annotated frames; videos without
    any left out. The dicts keep the original indices in ``annotated_frames``."""
    kept, cut, dropped = [], 0, 0
    for video in videos:
        frames = annotated.get(video["video_id"])
        if frames is None:
            kept.append(video)
            continue
        length = video["length"]
        check_annotated_frames(frames, length, f"{json_file}: video {video['video_id']}")
        if not frames:
            dropped += 1
            continue
        cut += len(frames) < length
        kept.append(
            {
                **video,
                "file_names": [video["file_names"][f] for f in frames],
                "annotations": [video["annotations"][f] for f in frames],
                "length": len(frames),
                "annotated_frames": frames,
            }
        )
    if cut or dropped:
        logger.info(
            f"{json_file}: {cut} videos kept their annotated frames only, {dropped} without any "
            "annotated frame left out"
        )
    return kept


def load_imported_dataset(json_file: str, image_root: str, dataset_name: str | None = None) -> list[dict]:
    """:func:`load_ytvis_json`, with sparse videos cut to their annotated frames."""
    videos = load_ytvis_json(json_file, image_root, dataset_name)
    annotated = _annotated_frames(json_file)
    return annotated_frames_only(videos, annotated, json_file) if annotated else videos


def _raise(error: Exception) -> list[dict]:
    raise error


def register_imported_dataset(name: str, json_file: str | os.PathLike, image_root: str | os.PathLike) -> None:
    """Register a YouTube-VIS JSON (e.g. written by ``tools/data/import_dataset.py``) as ``name``,
    its classes and colours as metadata, read on first use; sparse videos on their annotated frames."""
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    DatasetCatalog.register(name, partial(load_imported_dataset, json_file, image_root, name))
    MetadataCatalog[name] = _JsonMetadata(
        name=name, json_file=json_file, image_root=image_root, evaluator_type="ytvis"
    )


def register_env_datasets(reserved: Iterable[str] = (), environ: Mapping[str, str] = os.environ) -> list[str]:
    """Register the datasets of ``$MINVIS_DATASETS``; returns their names. A malformed entry
    with a usable name is registered so that using it raises its error (one line); other
    problems (no name, a name taken) are logged and the entry is skipped."""
    reserved = set(reserved)
    names = []
    for entry in parse_dataset_specs(environ.get(ENV_VAR, "")):
        name = entry[0]
        if name is None:
            logger.warning(str(entry[1]))
            continue
        if name in reserved or name in DatasetCatalog.list():
            logger.warning(f"{ENV_VAR}: {name} is already a registered dataset name; entry skipped")
            continue
        if isinstance(entry[1], DatasetSpecError):
            DatasetCatalog.register(name, partial(_raise, entry[1]))
            MetadataCatalog[name] = _JsonMetadata(name=name, _error=entry[1], evaluator_type="ytvis")
        else:
            register_imported_dataset(name, entry[1], entry[2])
        names.append(name)
    return names
