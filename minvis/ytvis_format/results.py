"""The YouTube-VIS / OVIS server submission format: write, zip, load, validate.

``results.json`` is a list of ``{"video_id": int, "category_id": int, "score": float,
"segmentations": [...]}`` with a compressed RLE dict or ``null`` per frame, uploaded as
``results.zip`` with ``results.json`` at the archive root. Our writers give absent frames an
all-zero RLE, as the official release does; ``null`` is accepted and scores the same.
"""

import io
import json
import math
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from .errors import YTVISFormatError, is_int, parse_json
from .rle import validate_rles

RESULTS_NAME = "results.json"
# Bounds of a results.zip: 4x the largest plausible results.json (a full OVIS or YouTube-VIS
# 2021 valid set is a few hundred MB), and room for stray files (a folder entry, __MACOSX).
MAX_RESULTS_BYTES = 4 * 2**30
MAX_ARCHIVE_MEMBERS = 16


def _entry_masks(entry: object, index: int) -> list[tuple[str, int, object]]:
    """Check an entry's fields; its non-null masks as (entry label, frame, RLE)."""
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
    return [(where, frame, rle) for frame, rle in enumerate(segmentations) if rle is not None]


def _masks_where(masks: list[tuple[str, int, object]]) -> Callable[[int], str]:
    return lambda i: f"{masks[i][0]} frame {masks[i][1]}"


def validate_result_entry(entry: object, index: int) -> None:
    """Check one submission entry; errors name the entry index (and video id if known)."""
    masks = _entry_masks(entry, index)
    validate_rles([rle for _, _, rle in masks], _masks_where(masks))


def submission_masks(results: object) -> list[tuple[str, int, object]]:
    """Check the entries of a submission (not their masks); (entry label, frame, RLE) of
    each non-null frame."""
    if not isinstance(results, list):
        raise YTVISFormatError(f"results must be a list of entries, got {type(results).__name__}")
    return [mask for index, entry in enumerate(results) for mask in _entry_masks(entry, index)]


def validate_results(results: object) -> list[dict[str, Any]]:
    """Check a whole submission (a list of entries) and return it; all its masks are
    validated together (:func:`validate_rles`: one numpy pass)."""
    masks = submission_masks(results)
    validate_rles([rle for _, _, rle in masks], _masks_where(masks))
    return results  # type: ignore[return-value]  # checked to be a list of entries


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Give an ``OSError`` of writing ``path`` its file name (a failed ``write`` has none)."""
    try:
        yield
    except OSError as error:
        error.filename = error.filename or str(path)
        raise


class SubmissionWriter:
    """Stream a submission to ``results.json``, entries validated and written as they arrive.

    Leaving the ``with`` block by an exception leaves the JSON list unterminated, so an
    interrupted run never looks like a complete submission. Callers write to a staged path
    (:mod:`minvis.output_paths`); a failed write is an ``OSError`` naming the file.
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
            with _naming(self.path):
                self._file.write(",\n" if self.num_entries else "\n")
                json.dump(entry, self._file)
            self.num_entries += 1

    def close(self) -> None:
        """Terminate the JSON list and close the file."""
        if self._file is not None:
            file, self._file = self._file, None
            with _naming(self.path):
                try:
                    file.write("\n]\n")
                finally:
                    file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        elif self._file is not None:
            self._file.close()
            self._file = None


def zip_results(json_path: str | Path, zip_path: str | Path | None = None) -> Path:
    """Write ``results.zip`` (next to ``json_path`` by default) holding it as ``results.json``
    (to a staged path: :mod:`minvis.output_paths`)."""
    json_path = Path(json_path)
    zip_path = json_path.with_name("results.zip") if zip_path is None else Path(zip_path)
    with _naming(zip_path), zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(json_path, arcname=RESULTS_NAME)
    return zip_path


def _read_member(archive: zipfile.ZipFile, path: Path, max_bytes: int) -> bytes:
    """``results.json`` of ``archive``, checked before and while it is inflated."""
    if len(archive.infolist()) > MAX_ARCHIVE_MEMBERS:
        raise YTVISFormatError(
            f"{path}: {len(archive.infolist())} files in the archive (at most {MAX_ARCHIVE_MEMBERS}; "
            f"a submission holds {RESULTS_NAME})"
        )
    try:
        info = archive.getinfo(RESULTS_NAME)
    except KeyError:
        raise YTVISFormatError(f"{path}: no {RESULTS_NAME} at the archive root") from None
    if info.flag_bits & 0x1:
        raise YTVISFormatError(f"{path}: {RESULTS_NAME} is encrypted; zip it without a password")
    too_large = f"{path}: {RESULTS_NAME} inflates to more than {max_bytes} bytes (a zip bomb?)"
    if info.file_size > max_bytes:
        raise YTVISFormatError(too_large)
    with archive.open(info) as member:  # the header's size is not trusted: read at most the bound
        data = member.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise YTVISFormatError(too_large)
    return data


def read_results(path: str | Path, max_bytes: int = MAX_RESULTS_BYTES) -> object:
    """Parse ``results.json`` or ``results.zip`` without validating it (the metric
    validates what it scores: :func:`load_results` would check every mask twice). An archive
    may hold few files and its ``results.json`` may inflate to ``max_bytes`` at most."""
    path = Path(path)
    if path.suffix != ".zip":
        return parse_json(path.read_bytes(), path)
    try:
        with zipfile.ZipFile(path) as archive:
            data = _read_member(archive, path, max_bytes)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error) as error:
        raise YTVISFormatError(f"{path}: not a valid zip archive ({error})") from error
    return parse_json(data, path)


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a submission from ``results.json`` or ``results.zip``; errors name the file."""
    path = Path(path)
    try:
        return validate_results(read_results(path))
    except YTVISFormatError as error:
        raise YTVISFormatError(f"{path}: {error}") from None
