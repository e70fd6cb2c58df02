"""Stream video frames from files, frame folders or glob patterns, and write videos.

Readers decode one frame at a time and yield RGB ``uint8 [H, W, 3]`` arrays; every failure
is a :class:`VideoReadError` naming the path. Live sources (cameras, streams, stdin) are in
:mod:`minvis.data.live_source`; :func:`open_frame_source` opens either kind.
"""

import glob
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from minvis.closing import ClosedOnExit

if TYPE_CHECKING:
    from .live_source import LiveSource

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
# A container's frame count is exact for .mp4/.avi but an estimate from duration x fps for
# others (.mkv): a video ending at most this fraction of it (or one frame) early is complete.
FRAME_COUNT_TOLERANCE = 0.01


class VideoReadError(OSError):
    """A video input that cannot be read (the message names the path)."""


class VideoWriteError(OSError):
    """A video output that cannot be written (the message names the path)."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a frame source before decoding it."""

    path: str  # the file, folder or pattern the frames come from
    height: int
    width: int
    fps: float | None  # None when unknown (image folders)
    num_frames: int | None  # None when the container does not say


def natural_sort_key(path: str) -> list[int | str]:
    """Sort key comparing runs of digits as numbers: ``f2.jpg`` < ``f10.jpg``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path)]


def _open_capture(path: str) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoReadError(
            f"cannot open video {path}: OpenCV (FFmpeg) does not recognise it as a video "
            "(a corrupt file or an unsupported codec?)"
        )
    return capture


class VideoFileSource:
    """Frames of a video file, decoded one at a time with ``cv2.VideoCapture``."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise VideoReadError(f"video file {self.path} does not exist")
        capture = _open_capture(self.path)
        try:
            ok, first = capture.read()
            if not ok or first is None:
                raise VideoReadError(f"video {self.path} has no decodable frame")
            fps = capture.get(cv2.CAP_PROP_FPS)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()
        self.info = VideoInfo(
            path=self.path,
            height=first.shape[0],
            width=first.shape[1],
            fps=fps if fps > 0 else None,
            num_frames=count if count > 0 else None,
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        """Decode frame by frame; raise :class:`VideoReadError` if decoding stops well
        before the container's frame count (a truncated or corrupt file)."""
        capture = _open_capture(self.path)
        decoded = 0
        try:
            while True:
                ok, frame = capture.read()  # BGR [H, W, 3]
                if not ok:
                    break
                decoded += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()
        expected = self.info.num_frames
        if expected is not None and expected - decoded > max(1, FRAME_COUNT_TOLERANCE * expected):
            raise VideoReadError(
                f"video {self.path}: decoding stopped after frame {decoded} of the {expected} its "
                "container lists (a truncated or corrupt file)"
            )


def read_image(path: str | Path) -> np.ndarray:
    """One image file as RGB ``uint8 [H, W, 3]``, the one decoder of training, evaluation and
    the demo: EXIF orientation applied, grey replicated, palettes expanded, alpha dropped, a
    16-bit sample ``v`` kept as its high byte ``v >> 8``; a truncated file is an error."""
    try:
        with Image.open(path) as file:
            image = ImageOps.exif_transpose(file)  # decodes the whole file
    except FileNotFoundError:
        raise VideoReadError(f"cannot read image {path}: it does not exist") from None
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's errors for bad or truncated files
        raise VideoReadError(f"cannot read image {path}: {error}") from None
    if image.mode.startswith("I"):  # 16-bit grey ("I", "I;16", "I;16B")
        grey = (np.clip(np.asarray(image), 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "F":
        raise VideoReadError(f"cannot read image {path}: floating-point images are not frames")
    return np.array(image.convert("RGB"))  # writable, as decoded video frames


class ImageSequenceSource:
    """Frames stored as image files, read one at a time in order (``origin``: their folder or pattern)."""

    def __init__(self, files: list[str], origin: str) -> None:
        if not files:
            raise VideoReadError(f"{origin}: no frames")
        self.files = files
        first = read_image(files[0])
        self.info = VideoInfo(
            path=origin, height=first.shape[0], width=first.shape[1], fps=None, num_frames=len(files)
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ImageSequenceSource":
        folder = str(folder)
        names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]
        if not names:
            raise VideoReadError(
                f"folder {folder} has no image files (looked for {', '.join(IMAGE_EXTENSIONS)})"
            )
        return cls([os.path.join(folder, n) for n in sorted(names, key=natural_sort_key)], folder)

    @classmethod
    def from_glob(cls, pattern: str) -> "ImageSequenceSource":
        files = [f for f in glob.glob(pattern) if os.path.isfile(f)]
        if not files:
            raise VideoReadError(f"the pattern {pattern} matches no file")
        return cls(sorted(files, key=natural_sort_key), pattern)

    def __iter__(self) -> Iterator[np.ndarray]:
        size = (self.info.height, self.info.width)
        for path in self.files:
            frame = read_image(path)
            if frame.shape[:2] != size:
                raise VideoReadError(
                    f"image {path} is {frame.shape[1]}x{frame.shape[0]} (WxH) but the first frame "
                    f"of {self.info.path} is {size[1]}x{size[0]}: all frames of a video need one size"
                )
            yield frame


def open_frame_source(
    path: str | Path, **live_options: Any
) -> "VideoFileSource | ImageSequenceSource | LiveSource":
    """The reader for ``path``: a video file, a folder of images or a glob pattern; or a live
    source (a camera index, a stream URL, ``-`` for stdin), opened with ``live_options`` by
    :func:`minvis.data.live_source.open_live_source`."""
    from .live_source import is_live_input, open_live_source  # it builds on this module

    path = str(path)
    if is_live_input(path):
        return open_live_source(path, **live_options)
    if os.path.isdir(path):
        return ImageSequenceSource.from_folder(path)
    if any(c in path for c in "*?[") and not os.path.exists(path):
        return ImageSequenceSource.from_glob(path)
    if not os.path.exists(path):
        raise VideoReadError(f"input {path} does not exist")
    if path.lower().endswith(VIDEO_EXTENSIONS):
        return VideoFileSource(path)
    raise VideoReadError(
        f"input {path} is neither a video file ({', '.join(VIDEO_EXTENSIONS)}), a folder of frames "
        "nor a glob pattern"
    )


class VideoWriter(ClosedOnExit):
    """Write RGB ``uint8 [H, W, 3]`` frames of one ``size`` ``(height, width)`` to a video file,
    with the codec of its extension. OpenCV's encoders report no write error (a full disk leaves
    an unplayable file): :meth:`check` reads the closed file back."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = str(path)
        suffix = Path(self.path).suffix.lower()
        if suffix not in _FOURCC:
            raise VideoWriteError(
                f"cannot write {self.path}: unknown video extension {suffix!r} "
                f"(use one of {', '.join(_FOURCC)})"
            )
        if fps <= 0:
            raise VideoWriteError(f"cannot write {self.path}: fps must be positive, got {fps}")
        self.size = size
        # OpenCV's encoders drop the last row/column of an odd-sized frame; pad it to an
        # even size instead (black bottom row / right column) so no pixel is lost.
        self.encoded_size = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        if self.encoded_size != size:
            warnings.warn(
                f"{self.path}: video encoders need even frame sizes; {size[1]}x{size[0]} (WxH) frames "
                f"are written padded to {self.encoded_size[1]}x{self.encoded_size[0]}",
                RuntimeWarning,
                stacklevel=2,
            )
        self.num_frames = 0
        fourcc = cv2.VideoWriter_fourcc(*_FOURCC[suffix])
        height, width = self.encoded_size
        self._writer: cv2.VideoWriter | None = cv2.VideoWriter(self.path, fourcc, fps, (width, height))
        if not self._writer.isOpened():
            self._writer = None
            raise VideoWriteError(
                f"OpenCV cannot open {self.path} for writing with codec {_FOURCC[suffix]} "
                "(does the folder exist and is it writable?)"
            )

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB ``uint8 [H, W, 3]`` frame of the writer's size."""
        if self._writer is None:
            raise VideoWriteError(f"{self.path} is already closed")
        if frame.shape != (*self.size, 3) or frame.dtype != np.uint8:
            raise VideoWriteError(
                f"{self.path}: expected uint8 frames of shape {(*self.size, 3)}, "
                f"got {frame.dtype} {frame.shape}"
            )
        pad = ((0, self.encoded_size[0] - self.size[0]), (0, self.encoded_size[1] - self.size[1]), (0, 0))
        self._writer.write(np.ascontiguousarray(np.pad(frame, pad)[:, :, ::-1]))
        self.num_frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def check(self, path: str | Path) -> str | None:
        """What is wrong with the video written (at ``path`` now), or None: OpenCV must count
        every frame written (within the tolerance of estimated counts) and decode the last one."""
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
            last_decodes = capture.set(cv2.CAP_PROP_POS_FRAMES, self.num_frames - 1) and capture.read()[0]
        finally:
            capture.release()
        expected = self.num_frames
        if abs(count - expected) > max(1, FRAME_COUNT_TOLERANCE * expected) or not last_decodes:
            last = "" if last_decodes else " and cannot decode the last one"
            return f"OpenCV reads back {max(count, 0)} of the {expected} frames written{last} (a full disk?)"
        return None
