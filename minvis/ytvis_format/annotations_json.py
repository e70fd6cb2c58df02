"""Read YouTube-VIS / OVIS ground-truth JSON with its uncompressed RLE counts as numpy arrays.

``json.loads`` would make a Python ``int`` of each of the millions of run lengths (most of the
time and memory). Each ``"counts": [...]`` list of non-negative integers is cut out of the text,
parsed in numpy a batch at a time, and put back in place of a marker after ``json.loads`` of the
rest. Anything unexpected (other numbers, a list outside ``annotations[i]["segmentations"][f]``,
the marker in the file, invalid JSON) sends the whole file to :func:`parse_json`, so values and
error messages are the standard parser's.
"""

import json
import re
import warnings
from pathlib import Path

import numpy as np

from .errors import parse_json
from .rle import split_by_lengths

_COUNTS_LIST = re.compile(rb'"counts"\s*:\s*\[')
_MARKER_JSON = b'"\\u0000"'  # in place of each list: the string "\x00", which no RLE holds
_MARKER = "\x00"
_MAX_RUN = 2**32 - 1
_BATCH_BYTES = 1 << 22  # list text parsed per numpy pass (~20 MB of temporaries)
_LIST_CHARACTERS = b"0123456789, \t\n\r"  # all a list of non-negative integers may hold
_ZERO = ord("0")


class _NeedsStandardParser(Exception):
    """The file holds something the fast path does not handle."""


def read_annotations_json(path: str | Path) -> object:
    """The JSON value of ``path``, with ``annotations[i]["segmentations"][f]["counts"]`` lists of
    integers in ``[0, 2**32)`` as ``uint32`` arrays (other lists stay, for the validation to report)."""
    data = Path(path).read_bytes()
    try:
        return _with_count_arrays(data)
    except _NeedsStandardParser:
        return parse_json(data, path)


def _with_count_arrays(data: bytes) -> object:
    if _MARKER_JSON in data:
        raise _NeedsStandardParser
    starts = [match.end() for match in _COUNTS_LIST.finditer(data)]  # first byte inside each list
    ends = [data.find(b"]", start) for start in starts]  # its closing bracket
    if not starts or min(ends) < 0:  # (a nested list leaves a bracket in the text: refused below)
        raise _NeedsStandardParser
    arrays = _parse_integer_lists(data, starts, ends)
    pieces, previous = [], 0
    for start, end in zip(starts, ends, strict=True):
        pieces += [data[previous : start - 1], _MARKER_JSON]
        previous = end + 1
    pieces.append(data[previous:])
    try:
        document = json.loads(b"".join(pieces))
    except (ValueError, RecursionError):
        raise _NeedsStandardParser from None
    _put_back(document, arrays)
    return document


def _put_back(document: object, arrays: list[np.ndarray]) -> None:
    """Replace the markers of ``annotations[i]["segmentations"][f]["counts"]`` by ``arrays``, in order."""
    masks = [
        mask
        for annotation in (document.get("annotations") if isinstance(document, dict) else None) or ()
        if isinstance(annotation, dict) and isinstance(annotation.get("segmentations"), list)
        for mask in annotation["segmentations"]
        if isinstance(mask, dict) and mask.get("counts") == _MARKER
    ]
    if len(masks) != len(arrays):
        raise _NeedsStandardParser  # a list elsewhere in the file
    for mask, counts in zip(masks, arrays, strict=True):
        mask["counts"] = counts


def _parse_integer_lists(data: bytes, starts: list[int], ends: list[int]) -> list[np.ndarray]:
    view, arrays, first = memoryview(data), [], 0
    while first < len(starts):
        last, size = first, 0
        while last < len(starts) and (last == first or size < _BATCH_BYTES):
            size += ends[last] - starts[last] + 1
            last += 1
        spans = list(zip(starts[first:last], ends[first:last], strict=True))
        numbers_per_list = [data.count(b",", s, e) + 1 for s, e in spans]  # if well formed
        arrays += _parse_batch(b",".join(view[s:e] for s, e in spans), numbers_per_list)
        first = last
    return arrays


def _parse_batch(text: bytes, numbers_per_list: list[int]) -> list[np.ndarray]:
    """The integers of comma-separated lists joined by commas, split into lists of the given lengths."""
    if text.translate(None, _LIST_CHARACTERS):
        raise _NeedsStandardParser  # signs, fractions, exponents, ...
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # numpy's warning on unparsed text
            values = np.fromstring(text, dtype=np.int64, sep=",")  # [M]
    except (ValueError, DeprecationWarning):
        raise _NeedsStandardParser from None  # an empty element, "1 2", ...
    if values.size != sum(numbers_per_list) or values.max() > _MAX_RUN:  # a trailing comma; not a run
        raise _NeedsStandardParser
    chars = np.frombuffer(text, dtype=np.uint8)  # [B]
    zeros = np.flatnonzero(chars[:-1] == _ZERO)  # a zero followed by a digit, after no digit: not JSON
    digit_before = (zeros > 0) & (chars[zeros - 1] - np.uint8(_ZERO) < 10)
    if (~digit_before & (chars[zeros + 1] - np.uint8(_ZERO) < 10)).any():
        raise _NeedsStandardParser
    return split_by_lengths(values.astype(np.uint32), numbers_per_list)
