"""Errors and JSON helpers shared by the YouTube-VIS annotation and submission readers."""

import json
from pathlib import Path


class YTVISFormatError(ValueError):
    """Input that does not follow the YouTube-VIS annotation or submission format."""


def is_int(value: object) -> bool:
    """True for a JSON integer (``bool`` excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_annotated_frames(frames: object, length: int, where: str) -> list[int]:
    """A video's ``annotated_frames`` (sparse annotation): increasing frame indices in
    ``[0, length)``, else a :class:`YTVISFormatError` naming ``where``."""
    if not (
        isinstance(frames, list)
        and all(is_int(f) and 0 <= f < length for f in frames)
        and all(a < b for a, b in zip(frames, frames[1:]))
    ):
        message = f"annotated_frames must list increasing frame indices in [0, {length})"
        raise YTVISFormatError(f"{where}: {message}")
    return frames


def parse_json(text: str | bytes, source: str | Path) -> object:
    """``json.loads``; invalid JSON or non-UTF-8 text is a :class:`YTVISFormatError` naming ``source``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise YTVISFormatError(
                f"{source}: not a JSON text file (byte {error.start} is not UTF-8; a binary file?)"
            ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise YTVISFormatError(f"{source}: invalid JSON ({error})") from error
    except RecursionError:
        raise YTVISFormatError(f"{source}: invalid JSON (nested too deeply)") from None


def read_json(path: str | Path) -> object:
    """Parse a JSON file; failures are :class:`YTVISFormatError` or ``OSError`` naming ``path``."""
    return parse_json(Path(path).read_bytes(), path)
