"""Live frame sources: a camera, a stream URL that FFmpeg opens, or raw frames on stdin.

A :class:`LiveSource` yields RGB ``uint8 [H, W, 3]`` frames like the file readers of
:mod:`minvis.data.video_io`, read ahead by a thread so that a slow consumer can drop stale
frames (``max_latency``) instead of falling ever further behind the source. Iteration ends,
with :attr:`LiveSource.stop_reason` saying why, at the end of the stream, on a lost
connection, after ``read_timeout`` seconds without a frame, or after :meth:`LiveSource.stop`.
"""

import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple, Protocol

import cv2
import numpy as np

from .video_io import VideoInfo, VideoReadError

STDIN_INPUT = "-"
RAW_PIXEL_FORMATS = ("rgb24", "bgr24")  # ffmpeg's names of the raw layouts read from stdin
DEFAULT_READ_TIMEOUT = 10.0  # seconds without a frame after which a live source counts as stalled
READ_AHEAD_FRAMES = 4  # frames the reader thread keeps queued for the consumer at most
POLL_SECONDS = 0.1  # how often a waiting thread looks for a stop
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_MS_PER_S = 1000


def is_live_input(path: str) -> bool:
    """``-`` (raw frames on stdin), a URL (``rtsp://...``, ``http://...``) or a camera index
    (digits that name no existing file or folder)."""
    return path == STDIN_INPUT or bool(_URL.match(path)) or (path.isdigit() and not os.path.exists(path))


class StreamEnded(Exception):
    """Raised by a reader when its stream ends; the message says why."""


class FrameReader(Protocol):
    def read(self) -> np.ndarray:
        """The next RGB ``uint8 [H, W, 3]`` frame (blocking); :class:`StreamEnded` at the end."""

    def close(self) -> None: ...


class CaptureReader:
    """Frames of a ``cv2.VideoCapture`` (a camera or a stream URL); ``lost``: why it ends."""

    def __init__(self, capture: cv2.VideoCapture, lost: str) -> None:
        self._capture = capture
        self._lost = lost

    def read(self) -> np.ndarray:
        ok, frame = self._capture.read()  # BGR [H, W, 3]
        if not ok:
            raise StreamEnded(self._lost)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._capture.release()


class RawFrameReader:
    """Raw frames of ``size`` ``(height, width)`` in ``pixel_format`` (:data:`RAW_PIXEL_FORMATS`)
    from a byte stream, e.g. ``ffmpeg -i INPUT -f rawvideo -pix_fmt rgb24 -``."""

    def __init__(self, stream: BinaryIO, size: tuple[int, int], pixel_format: str, name: str) -> None:
        if pixel_format not in RAW_PIXEL_FORMATS:
            raise ValueError(f"unknown pixel format {pixel_format!r}; known: {', '.join(RAW_PIXEL_FORMATS)}")
        self._stream = stream
        self._shape = (*size, 3)
        self._bgr = pixel_format == "bgr24"
        self._name = name

    def read(self) -> np.ndarray:
        buffer = bytearray(int(np.prod(self._shape)))
        view, filled = memoryview(buffer), 0
        while filled < len(buffer) and (count := self._stream.readinto(view[filled:])):
            filled += count
        if filled == 0:
            raise StreamEnded(f"end of input on {self._name}")
        if filled < len(buffer):
            raise StreamEnded(
                f"{self._name} ended inside a frame ({filled} of {len(buffer)} bytes; is the frame size "
                "right?): the partial frame is ignored"
            )
        frame = np.frombuffer(buffer, dtype=np.uint8).reshape(self._shape)  # [H, W, 3], writable
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if self._bgr else frame

    def close(self) -> None:
        """Nothing to do: the stream belongs to the caller (stdin stays open)."""


class TimedFrame(NamedTuple):
    frame: np.ndarray  # RGB uint8 [H, W, 3]
    time: float  # seconds since the epoch when it was read
    received: float  # time.monotonic() when it was read


class LiveSource:
    """Frames of ``reader`` (one pass), read ahead by a thread.

    ``max_latency`` None: every frame is yielded; the reader waits while
    :data:`READ_AHEAD_FRAMES` are queued. Otherwise a frame is yielded only if at most
    ``max_latency`` seconds have passed since it was read; older ones, and the oldest
    queued frame when the queue is full, are dropped and counted in :attr:`dropped`.
    """

    def __init__(
        self,
        reader: FrameReader,
        info: VideoInfo,
        *,
        max_latency: float | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        if max_latency is not None and max_latency <= 0:
            raise ValueError(f"max_latency must be positive, got {max_latency}")
        if read_timeout <= 0:
            raise ValueError(f"read_timeout must be positive, got {read_timeout}")
        self.info = info
        self.max_latency = max_latency
        self.read_timeout = read_timeout
        self.dropped = 0
        self.stop_reason: str | None = None
        self._reader = reader
        self._queue: deque[TimedFrame] = deque()
        self._ended: str | None = None  # why the reader thread stopped
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def stop(self, reason: str) -> None:
        """End the iteration after the frame in hand (safe in a signal handler); the first reason stays."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def __iter__(self) -> Iterator[np.ndarray]:
        return (timed.frame for timed in self.timed_frames())

    def timed_frames(self) -> Iterator[TimedFrame]:
        """The frames with the times they were read; the reader thread ends with the iteration.
        A stream that ends before its first frame is a :class:`VideoReadError` saying why."""
        if self._thread is not None:
            raise VideoReadError(f"{self.info.path}: a live source can be read only once")
        self._thread = threading.Thread(target=self._read_ahead, name="minvis-live-reader", daemon=True)
        self._thread.start()
        nothing_yielded = True
        try:
            while (timed := self._next()) is not None:
                nothing_yielded = False
                yield timed
        finally:
            self.stop("the consumer closed the source")
        if nothing_yielded:
            raise VideoReadError(f"{self.info.path} gave no frame: {self.stop_reason}")

    def _next(self) -> TimedFrame | None:
        deadline = time.monotonic() + self.read_timeout
        with self._changed:
            while self.stop_reason is None:
                now = time.monotonic()
                while self._queue and self._is_stale(self._queue[0], now):
                    self._queue.popleft()
                    self.dropped += 1
                if self._queue:
                    self._changed.notify_all()
                    return self._queue.popleft()
                if self._ended is not None:
                    self.stop(self._ended)
                elif now >= deadline:
                    self.stop(self._stalled())
                else:
                    self._changed.wait(min(POLL_SECONDS, deadline - now))
        return None

    def _is_stale(self, timed: TimedFrame, now: float) -> bool:
        return self.max_latency is not None and now - timed.received > self.max_latency

    def _stalled(self) -> str:
        return f"no frame from {self.info.path} for {self.read_timeout:g} s: the source stalled"

    def _read_ahead(self) -> None:
        ended = "stopped"
        try:
            while self.stop_reason is None:
                started = time.monotonic()
                try:
                    frame = self._reader.read()
                except StreamEnded as end:  # a read that timed out ends the stream too
                    ended = self._stalled() if time.monotonic() - started >= self.read_timeout else str(end)
                    break
                if frame.shape[:2] != (self.info.height, self.info.width):
                    ended = (
                        f"{self.info.path} changed its frame size from {self.info.width}x{self.info.height} "
                        f"to {frame.shape[1]}x{frame.shape[0]} (WxH)"
                    )
                    break
                self._enqueue(TimedFrame(frame, time.time(), time.monotonic()))
        except Exception as error:  # a thread cannot raise to the consumer: it says why it stopped
            ended = f"reading {self.info.path} failed: {error}"
        finally:
            self._reader.close()
            with self._changed:
                self._ended = ended
                self._changed.notify_all()

    def _enqueue(self, timed: TimedFrame) -> None:
        with self._changed:
            if self.max_latency is None:
                while len(self._queue) >= READ_AHEAD_FRAMES and self.stop_reason is None:
                    self._changed.wait(POLL_SECONDS)
            elif len(self._queue) >= READ_AHEAD_FRAMES:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(timed)
            self._changed.notify_all()


def open_live_source(
    path: str,
    *,
    max_latency: float | None = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    raw_size: tuple[int, int] | None = None,
    raw_format: str = "rgb24",
) -> LiveSource:
    """The :class:`LiveSource` of ``path`` (:func:`is_live_input`); ``raw_size`` ``(width, height)``
    and ``raw_format`` describe raw frames on stdin. Opening a URL waits at most ``read_timeout``."""
    if path == STDIN_INPUT:
        if raw_size is None:
            raise VideoReadError("raw frames on stdin (input -) need their size, width x height")
        width, height = raw_size
        reader: FrameReader = RawFrameReader(sys.stdin.buffer, (height, width), raw_format, "stdin")
        fps = None
    else:
        capture = _open_live_capture(path, read_timeout)
        width, height = (int(capture.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        camera = path.isdigit()
        lost = f"camera {path} stopped sending frames" if camera else f"the connection to {path} was lost"
        reader = CaptureReader(capture, f"{lost} (or the stream ended)")
        if width <= 0 or height <= 0:
            reader.close()
            raise VideoReadError(f"{path} does not report its frame size")
    info = VideoInfo(path=path, height=height, width=width, fps=fps or None, num_frames=None)
    return LiveSource(reader, info, max_latency=max_latency, read_timeout=read_timeout)


def _open_live_capture(path: str, timeout: float) -> cv2.VideoCapture:
    if path.isdigit():
        capture = cv2.VideoCapture(int(path))
        problem = f"cannot open camera {path} (is it connected and not in use?)"
    else:
        timeout_ms = round(timeout * _MS_PER_S)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, params)
        problem = f"cannot open the stream {path} within {timeout:g} s (is the address right, the server up?)"
    if not capture.isOpened():
        capture.release()
        raise VideoReadError(problem)
    return capture
