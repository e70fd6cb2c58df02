"""The YouTube-VIS / OVIS server submission format: encode, write, zip, load, validate.

A submission is ``results.json``: a list of
``{"video_id": int, "category_id": int, "score": float, "segmentations": [...]}`` with one
compressed RLE dict (``{"size": [h, w], "counts": str}``) or ``null`` per frame, uploaded
as ``results.zip`` with ``results.json`` at the archive root.

Empty frames are written as ``null``. The official evaluator treats ``null`` and an
empty RLE alike: neither adds to the intersection or the union of the spatio-temporal
IoU, and neither counts towards an instance's mean area (it skips falsy areas), so
``null`` scores identically and keeps the file small.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
from pycocotools import mask as mask_utils

RESULTS_NAME = "results.json"

RLE = dict[str, Any]


class YTVISFormatError(ValueError):
    """Input that does not follow the YouTube-VIS annotation or submission format."""


def encode_masks(masks: np.ndarray) -> list[RLE | None]:
    """Encode ``[n, h, w]`` boolean masks to compressed RLE dicts (``None`` if empty)."""
    if masks.ndim != 3:
        raise ValueError(f"expected masks of shape [n, h, w], got {masks.shape}")
    if masks.shape[0] == 0:
        return []
    column_major = np.asfortranarray(masks.transpose(1, 2, 0), dtype=np.uint8)
    encoded = mask_utils.encode(column_major)
    non_empty = masks.reshape(masks.shape[0], -1).any(axis=1)
    return [
        {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")} if keep else None
        for rle, keep in zip(encoded, non_empty, strict=True)
    ]


def encode_mask(mask: np.ndarray) -> RLE | None:
    """Encode one ``[h, w]`` boolean mask to a compressed RLE dict (``None`` if empty)."""
    if mask.ndim != 2:
        raise ValueError(f"expected a mask of shape [h, w], got {mask.shape}")
    return encode_masks(mask[None])[0]


def is_int(value: object) -> bool:
    """True for a JSON integer (``bool`` excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def validate_rle(rle: object, where: str) -> None:
    """Check that ``rle`` is a compressed RLE dict with a ``[h, w]`` size and str counts."""
    if not isinstance(rle, dict):
        raise YTVISFormatError(f"{where}: expected an RLE dict or null, got {type(rle).__name__}")
    if "size" not in rle or "counts" not in rle:
        raise YTVISFormatError(f"{where}: RLE needs both 'size' and 'counts'")
    size = rle["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(is_int(s) and s > 0 for s in size)):
        raise YTVISFormatError(f"{where}: RLE size must be [height, width], got {size!r}")
    if not isinstance(rle["counts"], str):
        raise YTVISFormatError(
            f"{where}: RLE counts must be a compressed string, got {type(rle['counts']).__name__}"
        )


def validate_result_entry(entry: object, index: int) -> None:
    """Check one submission entry; errors name the entry index (and video id if known)."""
    where = f"results entry {index}"
    if not isinstance(entry, dict):
        raise YTVISFormatError(f"{where}: expected an object, got {type(entry).__name__}")
    missing = [k for k in ("video_id", "category_id", "score", "segmentations") if k not in entry]
    if missing:
        raise YTVISFormatError(f"{where}: missing key(s) {', '.join(missing)}")
    if not is_int(entry["video_id"]):
        raise YTVISFormatError(f"{where}: video_id must be an integer, got {entry['video_id']!r}")
    where = f"{where} (video_id {entry['video_id']})"
    if not is_int(entry["category_id"]):
        raise YTVISFormatError(f"{where}: category_id must be an integer, got {entry['category_id']!r}")
    score = entry["score"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise YTVISFormatError(f"{where}: score must be a finite number, got {score!r}")
    segmentations = entry["segmentations"]
    if not isinstance(segmentations, list) or not segmentations:
        raise YTVISFormatError(f"{where}: segmentations must be a non-empty list (one per frame)")
    for frame, rle in enumerate(segmentations):
        if rle is not None:
            validate_rle(rle, f"{where} frame {frame}")


def validate_results(results: object) -> list[dict[str, Any]]:
    """Check a whole submission (a list of entries) and return it."""
    if not isinstance(results, list):
        raise YTVISFormatError(f"results must be a list of entries, got {type(results).__name__}")
    for index, entry in enumerate(results):
        validate_result_entry(entry, index)
    return results


class SubmissionWriter:
    """Stream a submission to ``results.json`` one video at a time.

    Entries are validated and serialised as they arrive, so memory does not grow with
    the number of videos. The file is a valid JSON list once :meth:`close` has run;
    leaving the ``with`` block by an exception closes the file without terminating the
    list, so an interrupted run never looks like a complete submission.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.num_entries = 0
        self._file: io.TextIOWrapper | None = self.path.open("w", encoding="utf-8")
        self._file.write("[")

    def write(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append entries (typically one video's instances) to the file."""
        if self._file is None:
            raise RuntimeError(f"{self.path} is already closed")
        for entry in entries:
            validate_result_entry(entry, self.num_entries)
            self._file.write(",\n" if self.num_entries else "\n")
            json.dump(entry, self._file)
            self.num_entries += 1

    def close(self) -> None:
        """Terminate the JSON list and close the file."""
        if self._file is not None:
            self._file.write("\n]\n")
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif self._file is not None:
            self._file.close()
            self._file = None


def zip_results(json_path: str | Path, zip_path: str | Path | None = None) -> Path:
    """Write ``results.zip`` (next to ``json_path`` by default) holding it as ``results.json``."""
    json_path = Path(json_path)
    zip_path = json_path.with_name("results.zip") if zip_path is None else Path(zip_path)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(json_path, arcname=RESULTS_NAME)
    return zip_path


def parse_json(text: str, source: str | Path) -> object:
    """``json.loads`` that reports invalid JSON as a :class:`YTVISFormatError`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise YTVISFormatError(f"{source}: invalid JSON ({error})") from error


def _read_results_text(path: Path) -> str:
    if path.suffix != ".zip":
        return path.read_text(encoding="utf-8")
    try:
        with zipfile.ZipFile(path) as archive:
            if RESULTS_NAME not in archive.namelist():
                raise YTVISFormatError(f"{path}: no {RESULTS_NAME} at the archive root")
            return archive.read(RESULTS_NAME).decode("utf-8")
    except zipfile.BadZipFile as error:
        raise YTVISFormatError(f"{path}: not a valid zip archive ({error})") from error


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """Read a submission from ``results.json`` or ``results.zip`` and validate its format."""
    path = Path(path)
    return validate_results(parse_json(_read_results_text(path), path))
