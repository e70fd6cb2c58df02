"""RLE masks as the YouTube-VIS format stores them: encode, and validate before pycocotools.

pycocotools trusts its input: an RLE whose runs do not add up to ``h * w`` makes its
area/IoU/merge loops run past the mask (spinning for ever on some inputs), and a
character outside its alphabet decodes to garbage. :func:`validate_rle` therefore
decodes the counts itself, in numpy, and checks them before any pycocotools call.

The compressed counts string (pycocotools' ``rleToString``/``rleFrString``) is like
LEB128 with 6 bits per character: each character is ``48 + c`` with ``0 <= c < 64``;
the low 5 bits of ``c`` are the next 5 bits of a value (least significant first), bit
``0x20`` says another character of the same value follows, and bit ``0x10`` of a
value's last character is its sign (two's complement). From the fourth value on, each
value is the difference to the run two places before it.
"""

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .errors import YTVISFormatError, is_int

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


def decode_counts_string(counts: str, where: str) -> np.ndarray:
    """The runs ``[m]`` (int64) of a compressed counts string, as pycocotools reads them.

    Linear in the string's length. Raises :class:`YTVISFormatError` on a character
    outside the alphabet, a string that ends inside a value, or a value too long to be
    a run.
    """
    try:
        raw = np.frombuffer(counts.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        raise YTVISFormatError(f"{where}: RLE counts string has a non-ASCII character") from None
    if raw.size == 0:
        raise YTVISFormatError(f"{where}: RLE counts string is empty")
    chars = raw.astype(np.int64) - _FIRST_CHAR  # [n]
    bad = np.flatnonzero((chars < 0) | (chars >= _ALPHABET))
    if bad.size:
        raise YTVISFormatError(
            f"{where}: RLE counts string has an invalid character {counts[bad[0]]!r} at {bad[0]}"
        )
    last = (chars & _MORE) == 0  # [n] last character of its value
    if not last[-1]:
        raise YTVISFormatError(f"{where}: RLE counts string ends inside a value (truncated?)")
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))  # [m]
    lengths = np.diff(np.append(starts, chars.size))  # [m] characters per value
    if lengths.max() > _MAX_CHARS_PER_VALUE:
        raise YTVISFormatError(f"{where}: RLE counts string holds a run too long for any mask")
    position = np.arange(chars.size) - np.repeat(starts, lengths)  # [n] index within its value
    values = np.add.reduceat((chars & 0x1F) << (_BITS * position), starts)  # [m]
    negative = (chars[starts + lengths - 1] & _SIGN) != 0
    values = values - np.where(negative, np.left_shift(1, _BITS * lengths), 0)
    runs = values.copy()  # runs[i] = values[i] + runs[i - 2] for i > 2
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs


def validate_rle(rle: object, where: str, *, compressed_only: bool = True) -> None:
    """Check an RLE dict completely, so that pycocotools can use it safely.

    ``size`` must be ``[h, w]`` (positive integers) and ``counts`` a compressed string
    or, unless ``compressed_only`` (the submission format), a list of integers; the runs
    must be non-negative and add up to ``h * w``. Raises :class:`YTVISFormatError`
    naming ``where``.
    """
    if not isinstance(rle, dict):
        raise YTVISFormatError(f"{where}: expected an RLE dict or null, got {type(rle).__name__}")
    if "size" not in rle or "counts" not in rle:
        raise YTVISFormatError(f"{where}: RLE needs both 'size' and 'counts'")
    size, counts = rle["size"], rle["counts"]
    if not (isinstance(size, list) and len(size) == 2 and all(is_int(s) and s > 0 for s in size)):
        raise YTVISFormatError(f"{where}: RLE size must be [height, width], got {size!r}")
    if isinstance(counts, str):
        runs = decode_counts_string(counts, where)
    elif isinstance(counts, list) and not compressed_only:
        if not counts or not all(is_int(c) for c in counts):
            raise YTVISFormatError(f"{where}: uncompressed RLE counts must be a non-empty list of integers")
        runs = np.array(counts, dtype=object)
    else:
        expected = "a compressed string" if compressed_only else "a compressed string or a list of integers"
        raise YTVISFormatError(f"{where}: RLE counts must be {expected}, got {type(counts).__name__}")
    if (runs < 0).any() or (runs > _MAX_RUN).any():
        raise YTVISFormatError(f"{where}: RLE counts hold a negative or oversized run")
    total, pixels = int(runs.sum()), size[0] * size[1]
    if total != pixels:
        raise YTVISFormatError(
            f"{where}: RLE runs add up to {total} pixels, not {size[0]} x {size[1]} = {pixels}"
        )
