"""Compressed RLE masks as the YouTube-VIS format stores them: encode and validate."""

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .errors import YTVISFormatError, is_int

RLE = dict[str, Any]


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
