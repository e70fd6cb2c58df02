"""RLE masks as the YouTube-VIS format stores them: encode, and validate before pycocotools.

pycocotools trusts its input (runs not adding up to ``h * w`` make its loops run past the mask,
for ever on some inputs; a bad character decodes to garbage), so the counts are decoded and
checked here, in numpy, first.

Compressed counts (pycocotools' ``rleToString``) are LEB128-like, one character ``48 + c`` per
6 bits: the low 5 bits of ``c`` are the value's next bits (least significant first), bit ``0x20``
says another character follows, bit ``0x10`` of a value's last character is its sign. From the
fourth value on, each value is the difference to the run two places before it.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .errors import YTVISFormatError

RLE = dict[str, Any]

_FIRST_CHAR = 48  # '0'
_ALPHABET = 64  # characters '0' .. 'o'
_MORE = 0x20  # another character of this value follows
_SIGN = 0x10  # in a value's last character: the value is negative
_BITS = 5  # value bits per character
# A run fits pycocotools' uint32; 7 characters (35 bits with sign) encode any such
# difference, so a longer value cannot be a valid run.
_MAX_RUN = 2**32 - 1
_MAX_CHARS_PER_VALUE = 7
_NO_RUNS = np.zeros(0, dtype=np.int64)
_CHUNK = 2048  # RLEs decoded per numpy pass: ~20 MB of temporaries for 360x640 masks
_NEVER = 2**62  # more pixels than any sum of runs can reach (keeps h * w in int64)


def encode_masks(masks: np.ndarray) -> list[RLE]:
    """Encode ``[n, h, w]`` boolean masks to compressed RLE dicts (an all-zero RLE if
    empty, as the official release writes every frame of an instance)."""
    if masks.ndim != 3:
        raise ValueError(f"expected masks of shape [n, h, w], got {masks.shape}")
    if masks.shape[0] == 0:
        return []
    column_major = np.asfortranarray(masks.transpose(1, 2, 0), dtype=np.uint8)
    return [
        {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        for rle in mask_utils.encode(column_major)
    ]


def _ascii(counts: str | bytes, where: Callable[[int], str], index: int) -> bytes:
    if isinstance(counts, bytes):
        return counts
    try:
        return counts.encode("ascii")
    except UnicodeEncodeError:
        raise YTVISFormatError(f"{where(index)}: RLE counts string has a non-ASCII character") from None


def _string_at(string_ends: np.ndarray, char: int) -> int:
    return int(np.searchsorted(string_ends, char, side="right"))


def decode_counts(
    strings: Sequence[str | bytes], where: Callable[[int], str]
) -> tuple[np.ndarray, np.ndarray]:
    """The runs of compressed counts strings, as pycocotools reads them, in one numpy pass:
    all runs concatenated ``[N]`` (int64) and the runs per string ``[S]``. A bad string ``s``
    (empty, bad character, truncated, a value too long for a run) raises naming ``where(s)``."""
    try:  # the usual case: ASCII str, one character per byte
        joined = "".join(strings).encode("ascii")  # type: ignore[arg-type]
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))  # [S] characters
    except (TypeError, UnicodeEncodeError):  # bytes among them, or a string to report
        encoded = [_ascii(counts, where, s) for s, counts in enumerate(strings)]
        joined = b"".join(encoded)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    if lengths.size and lengths.min() == 0:
        raise YTVISFormatError(f"{where(int(lengths.argmin()))}: RLE counts string is empty")
    string_ends = np.cumsum(lengths)  # [S]
    chars = np.frombuffer(joined, dtype=np.uint8) - np.uint8(_FIRST_CHAR)  # [C], wraps below '0'
    bad = np.flatnonzero(chars >= _ALPHABET)
    if bad.size:
        s = _string_at(string_ends, bad[0])
        position = int(bad[0] - (string_ends[s] - lengths[s]))
        character = chr((int(chars[bad[0]]) + _FIRST_CHAR) & 0xFF)
        raise YTVISFormatError(
            f"{where(s)}: RLE counts string has an invalid character {character!r} at {position}"
        )
    last = chars < _MORE  # [C] last character of its value
    truncated = np.flatnonzero(~last[string_ends - 1])
    if truncated.size:
        where_s = where(int(truncated[0]))
        raise YTVISFormatError(f"{where_s}: RLE counts string ends inside a value (truncated?)")
    value_ends = np.flatnonzero(last)  # [N]
    value_lengths = np.diff(value_ends, prepend=-1)  # [N] characters per value
    if value_lengths.size and value_lengths.max() > _MAX_CHARS_PER_VALUE:
        s = _string_at(string_ends, value_ends[value_lengths.argmax()])
        raise YTVISFormatError(f"{where(s)}: RLE counts string holds a run too long for any mask")
    values = (chars[value_ends] ^ np.uint8(_SIGN)).astype(np.int64) - _SIGN  # [N] top digit, sign-extended
    for k in range(1, int(value_lengths.max(initial=0))):  # Horner, towards the least significant
        longer = np.flatnonzero(value_lengths > k)
        values[longer] = (values[longer] << _BITS) + (chars[value_ends[longer] - k] & (_MORE - 1))
    first = np.searchsorted(value_ends, string_ends - lengths)  # [S] index of each string's first value
    per_string = np.diff(np.append(first, value_ends.size))  # [S]
    return _undo_deltas(values, per_string, first), per_string


def _undo_deltas(values: np.ndarray, per_string: np.ndarray, first: np.ndarray) -> np.ndarray:
    """[N] runs from ``values`` [N]: ``runs[i] = values[i] + runs[i - 2]`` for i > 2 within each string.

    The runs at offsets 1, 3, 5, ... of a string are a cumulative sum, as are those at 2, 4, 6, ...;
    each such chain lies in one interleaved half of the array, so each half is one cumulative sum
    once each chain head has the previous chain's total taken off."""
    runs = np.empty_like(values)
    heads = np.concatenate([first, (first + 1)[per_string > 1], (first + 2)[per_string > 2]])  # chain starts
    for parity in (0, 1):
        half = values[parity::2]  # [~N/2] view; its first element is always a chain head
        half_heads = np.sort(heads[heads % 2 == parity] // 2)
        total = np.cumsum(half)
        before = np.concatenate(([0], total[half_heads[1:] - 1]))  # sum of all values before each head
        adjusted = half.copy()
        adjusted[half_heads] -= np.diff(before, prepend=0)  # the previous chain's total
        runs[parity::2] = np.cumsum(adjusted)
    return runs


def decode_counts_string(counts: str, where: str) -> np.ndarray:
    """The runs ``[m]`` (int64) of one compressed counts string (see :func:`decode_counts`)."""
    return decode_counts([counts], lambda _: where)[0]


def _is_int_array(counts: object) -> bool:
    return isinstance(counts, np.ndarray) and counts.ndim == 1 and counts.dtype.kind in "iu"


def _is_size(size: object) -> bool:
    """``[height, width]``, positive integers (``type(...) is int``: fast, and excludes ``bool``)."""
    return (
        type(size) is list
        and len(size) == 2
        and type(size[0]) is int
        and type(size[1]) is int
        and size[0] > 0
        and size[1] > 0
    )


def _is_usual(rle: object, compressed_only: bool) -> bool:
    """A quick yes for the common well-formed RLEs (:func:`_check_structure` decides the rest)."""
    if type(rle) is not dict or not _is_size(rle.get("size")):
        return False
    counts = rle.get("counts")
    return type(counts) is str or (not compressed_only and _is_int_array(counts) and counts.size > 0)


def _check_structure(rle: object, where: Callable[[], str], compressed_only: bool) -> None:
    """``rle`` is a dict with a valid ``size`` and ``counts`` of the allowed kinds."""
    if not isinstance(rle, dict):
        raise YTVISFormatError(f"{where()}: expected an RLE dict or null, got {type(rle).__name__}")
    if "size" not in rle or "counts" not in rle:
        raise YTVISFormatError(f"{where()}: RLE needs both 'size' and 'counts'")
    size, counts = rle["size"], rle["counts"]
    if not _is_size(size):
        raise YTVISFormatError(f"{where()}: RLE size must be [height, width], got {size!r}")
    if isinstance(counts, str):
        return
    if compressed_only or not isinstance(counts, list | np.ndarray):
        expected = "a compressed string" if compressed_only else "a compressed string or a list of integers"
        raise YTVISFormatError(f"{where()}: RLE counts must be {expected}, got {type(counts).__name__}")
    if isinstance(counts, np.ndarray):
        if not (_is_int_array(counts) and counts.size):
            raise YTVISFormatError(
                f"{where()}: uncompressed RLE counts must be a non-empty array of integers"
            )
    elif not counts or not all(issubclass(t, int) and t is not bool for t in set(map(type, counts))):
        raise YTVISFormatError(f"{where()}: uncompressed RLE counts must be a non-empty list of integers")


def _given_runs(counts: list[int] | np.ndarray, where: Callable[[], str]) -> np.ndarray:
    """[m] integer runs of uncompressed counts (already checked to be integers)."""
    if isinstance(counts, np.ndarray):
        return counts
    if max(counts) > _MAX_RUN or min(counts) < 0:  # before int64
        raise YTVISFormatError(f"{where()}: RLE counts hold a negative or oversized run")
    return np.array(counts, dtype=np.int64)


@dataclass(frozen=True)
class DecodedRuns:
    """The runs of S RLEs, concatenated in order."""

    runs: np.ndarray  # [N] int64, each RLE's runs (background first)
    run_counts: np.ndarray  # [S] int64 runs per RLE


def split_by_lengths(values: np.ndarray, lengths: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """``values`` cut into consecutive pieces of ``lengths`` (``np.split`` without its
    per-piece overhead)."""
    bounds = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64))).tolist()
    return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=False)]


def _runs_in_chunks(
    rles: Sequence[object], where: Callable[[int], str], compressed_only: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Check every RLE; yield (runs [N] int64, runs per RLE [S]) ``_CHUNK`` RLEs at a time."""
    for i, rle in enumerate(rles):
        if not _is_usual(rle, compressed_only):
            _check_structure(rle, lambda i=i: where(i), compressed_only)
    for first in range(0, len(rles), _CHUNK):
        yield _checked_runs(rles[first : first + _CHUNK], lambda i, first=first: where(first + i))


def validate_rles(
    rles: Sequence[object], where: Callable[[int], str], *, compressed_only: bool = True
) -> None:
    """Check RLE dicts completely, so that pycocotools can use them safely.

    ``size`` is ``[h, w]``; ``counts`` a compressed string or, unless ``compressed_only`` (the
    submission format), a list or 1-d array of integers; the runs are non-negative, fit uint32
    and add up to ``h * w``. The first bad RLE ``i`` raises naming ``where(i)``.
    """
    for _ in _runs_in_chunks(rles, where, compressed_only):
        pass


def decode_rles(
    rles: Sequence[object], where: Callable[[int], str], *, compressed_only: bool = True
) -> DecodedRuns:
    """Check RLE dicts as :func:`validate_rles` does and return their runs."""
    chunks = list(_runs_in_chunks(rles, where, compressed_only))
    if not chunks:
        return DecodedRuns(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    return DecodedRuns(np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks]))


def _checked_runs(rles: Sequence[Any], where: Callable[[int], str]) -> tuple[np.ndarray, np.ndarray]:
    """The runs [N] and runs per RLE [S] of structurally checked RLEs, checked to fit and add up to h * w."""
    counts = [rle["counts"] for rle in rles]
    compressed = [i for i, c in enumerate(counts) if isinstance(c, str)]
    runs, per_string = _NO_RUNS, _NO_RUNS
    if compressed:
        runs, per_string = decode_counts([counts[i] for i in compressed], lambda k: where(compressed[k]))
    if len(compressed) < len(rles):  # uncompressed counts too: every RLE's runs in order
        decoded = iter(split_by_lengths(runs, per_string))
        pieces = [
            next(decoded) if isinstance(c, str) else _given_runs(c, lambda i=i: where(i))
            for i, c in enumerate(counts)
        ]
        # uint64 beyond int64 wraps negative: reported below
        runs = np.concatenate(pieces, dtype=np.int64, casting="unsafe")
        per_string = np.array([p.size for p in pieces], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(per_string)))  # [S + 1]
    bad = np.flatnonzero((runs < 0) | (runs > _MAX_RUN))
    if bad.size:
        i = _string_at(offsets[1:], bad[0])
        raise YTVISFormatError(f"{where(i)}: RLE counts hold a negative or oversized run")
    totals = np.add.reduceat(runs, offsets[:-1]) if runs.size else np.zeros(0, dtype=np.int64)  # [S]
    sizes = [rle["size"] for rle in rles]
    pixels = np.array([min(h * w, _NEVER) for h, w in sizes], dtype=np.int64)  # [S]
    wrong = np.flatnonzero(totals != pixels)
    if wrong.size:
        i = int(wrong[0])
        h, w = sizes[i]
        raise YTVISFormatError(
            f"{where(i)}: RLE runs add up to {int(totals[i])} pixels, not {h} x {w} = {h * w}"
        )
    return runs, per_string


def validate_rle(rle: object, where: str, *, compressed_only: bool = True) -> None:
    """Check one RLE dict completely (see :func:`validate_rles`)."""
    validate_rles([rle], lambda _: where, compressed_only=compressed_only)
