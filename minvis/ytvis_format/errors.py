"""Errors and JSON helpers shared by the YouTube-VIS annotation and submission readers."""

import json
from pathlib import Path


class YTVISFormatError(ValueError):
    """Input that does not follow the YouTube-VIS annotation or submission format."""


def is_int(value: object) -> bool:
    """True for a JSON integer (``bool`` excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def parse_json(text: str, source: str | Path) -> object:
    """``json.loads`` that reports invalid JSON as a :class:`YTVISFormatError`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise YTVISFormatError(f"{source}: invalid JSON ({error})") from error
