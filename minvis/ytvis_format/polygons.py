"""Polygon segmentations (``[[x0, y0, x1, y1, ...], ...]``), validated before pycocotools.

pycocotools reads a 4-number polygon as a box, fails with a bare ``TypeError`` on non-numbers
and rasterises in time and memory that grow with the coordinates (a stray ``1e12`` takes the
machine down), so coordinates must lie within one image size of the image.
"""

import math

from .errors import YTVISFormatError

MIN_POLYGON_COORDS = 6  # three points


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_polygons(polygons: object, height: int, width: int, where: str) -> None:
    """Check a non-empty list of polygons of at least three finite ``x, y`` points each,
    with ``-width <= x <= 2 width`` and ``-height <= y <= 2 height``."""
    if not isinstance(polygons, list) or not polygons:
        raise YTVISFormatError(f"{where}: polygons must be a non-empty list of coordinate lists")
    for index, polygon in enumerate(polygons):
        if not isinstance(polygon, list) or not all(_is_number(v) for v in polygon):
            raise YTVISFormatError(f"{where}: polygon {index} must be a list of finite numbers")
        if len(polygon) % 2 or len(polygon) < MIN_POLYGON_COORDS:
            raise YTVISFormatError(
                f"{where}: polygon {index} needs an even number (>= {MIN_POLYGON_COORDS}) of "
                f"coordinates, got {len(polygon)}"
            )
        xs, ys = polygon[0::2], polygon[1::2]
        if min(xs) < -width or max(xs) > 2 * width or min(ys) < -height or max(ys) > 2 * height:
            raise YTVISFormatError(
                f"{where}: polygon {index} lies far outside the {width}x{height} (WxH) image"
            )
