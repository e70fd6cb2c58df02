"""The YouTube-VIS / OVIS file formats: RLE masks, submissions, format errors.

Imports only numpy and pycocotools (no torch or detectron2), so file-only tools start fast.
"""

from .annotations_json import read_annotations_json
from .errors import YTVISFormatError, check_annotated_frames, is_int, parse_json, read_json
from .polygons import validate_polygons
from .results import (
    SubmissionWriter,
    load_results,
    read_results,
    submission_masks,
    validate_result_entry,
    validate_results,
    zip_results,
)
from .rle import (
    RLE,
    DecodedRuns,
    decode_counts,
    decode_counts_string,
    decode_rles,
    encode_masks,
    split_by_lengths,
    validate_rle,
    validate_rles,
)

__all__ = [
    "RLE",
    "DecodedRuns",
    "SubmissionWriter",
    "YTVISFormatError",
    "check_annotated_frames",
    "decode_counts",
    "decode_counts_string",
    "decode_rles",
    "encode_masks",
    "is_int",
    "load_results",
    "parse_json",
    "read_annotations_json",
    "read_results",
    "split_by_lengths",
    "submission_masks",
    "read_json",
    "validate_result_entry",
    "validate_polygons",
    "validate_results",
    "validate_rle",
    "validate_rles",
    "zip_results",
]
