"""Live frame sources (minvis.data.live_source): raw frames on a pipe, MJPEG over HTTP from a
local server, the drop policy, stalls, stops and lost connections."""

import http.server
import io
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from minvis.data.live_source import (
    CaptureReader,
    LiveSource,
    RawFrameReader,
    StreamEnded,
    is_live_input,
)
from minvis.data.video_io import VideoInfo, VideoReadError, open_frame_source

SIZE = (24, 32)  # (height, width) of the test frames
JPEG_TOLERANCE = 3.0  # mean absolute difference of two decoders of one JPEG, in grey levels


def distinct_frames(count: int, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """RGB frames whose value at pixel (y, x), channel c is ``index * 7 + y + x + 50 * c`` (mod 256)."""
    y, x, c = np.ogrid[: size[0], : size[1], :3]
    return [((index * 7 + y + x + 50 * c) % 256).astype(np.uint8) for index in range(count)]


class MjpegServer:
    """Serves BGR ``frames`` as an MJPEG stream (``multipart/x-mixed-replace``) on 127.0.0.1,
    ``interval`` seconds apart, then ``after``: ``close`` the connection, ``stall`` (send nothing
    until the server is closed) or ``repeat`` the frames until the client goes."""

    def __init__(self, frames: list[np.ndarray], after: str = "close", interval: float = 0.0) -> None:
        self.jpegs = [cv2.imencode(".jpg", frame)[1].tobytes() for frame in frames]
        self.after = after
        self.interval = interval
        self.released = threading.Event()

    def __enter__(self) -> "MjpegServer":
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for jpeg in server.stream():
                        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                        self.wfile.write(head % len(jpeg) + jpeg + b"\r\n")
                        self.wfile.flush()
                        server.released.wait(server.interval)
                except OSError:  # the client went away
                    return
                if server.after == "stall":
                    server.released.wait()

            def log_message(self, *args: object) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/stream.mjpg"
        return self

    def stream(self) -> Iterator[bytes]:
        yield from self.jpegs
        while self.after == "repeat" and not self.released.is_set():
            yield from self.jpegs

    def __exit__(self, *exc_info: object) -> None:
        self.released.set()
        self.http.shutdown()
        self.http.server_close()


class ListReader:
    """A reader of given frames, ``interval`` seconds apart, then of nothing for ``stall`` seconds
    (a read timing out, as FFmpeg's do), then the end."""

    def __init__(self, frames: list[np.ndarray], interval: float = 0.0, stall: float = 0.0) -> None:
        self.frames = list(frames)
        self.interval = interval
        self.stall = stall
        self.closed = threading.Event()

    def read(self) -> np.ndarray:
        if not self.frames:
            time.sleep(self.stall)
            raise StreamEnded("the list ended")
        time.sleep(self.interval)
        return self.frames.pop(0)

    def close(self) -> None:
        self.closed.set()


def live(reader, **options) -> LiveSource:
    return LiveSource(reader, VideoInfo("test", *SIZE, fps=None, num_frames=None), **options)


def test_live_inputs_are_told_from_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert all(map(is_live_input, ["-", "0", "12", "rtsp://cam/1", "http://h:8080/v.mjpg", "file:///x.mp4"]))
    (tmp_path / "3").mkdir()  # an existing file or folder named by digits is not a camera
    assert not any(map(is_live_input, ["3", "video.mp4", "frames/", "./0", "/dev/video0"]))


@pytest.mark.parametrize("pixel_format", ["rgb24", "bgr24"])
def test_raw_frames_on_a_pipe_are_read_whole_and_a_partial_frame_is_ignored(pixel_format):
    frames = distinct_frames(3)
    layout = (lambda f: f) if pixel_format == "rgb24" else (lambda f: f[:, :, ::-1])
    data = b"".join(layout(f).tobytes() for f in frames) + b"\x01" * 100  # 3 frames and a piece
    source = live(RawFrameReader(io.BytesIO(data), SIZE, pixel_format, "the pipe"))
    read = list(source)
    assert len(read) == 3 and all(np.array_equal(a, b) for a, b in zip(read, frames))
    assert read[0].flags.writeable
    frame_bytes = SIZE[0] * SIZE[1] * 3
    assert source.stop_reason == (
        f"the pipe ended inside a frame (100 of {frame_bytes} bytes; is the frame size right?): "
        "the partial frame is ignored"
    )
    whole = live(RawFrameReader(io.BytesIO(data[: 2 * frame_bytes]), SIZE, pixel_format, "the pipe"))
    assert len(list(whole)) == 2 and whole.stop_reason == "end of input on the pipe"
    with pytest.raises(VideoReadError, match="^test gave no frame: end of input on the pipe$"):
        list(live(RawFrameReader(io.BytesIO(b""), SIZE, pixel_format, "the pipe")))


def test_without_max_latency_every_frame_comes_in_order_however_slow_the_consumer():
    frames = distinct_frames(20)
    source = live(ListReader(frames))
    read = []
    for frame in source:
        time.sleep(0.005)  # slower than the reader: it waits, never drops
        read.append(frame)
    assert len(read) == 20 and all(a is b for a, b in zip(read, frames))
    assert source.dropped == 0 and source.stop_reason == "the list ended"


def test_max_latency_drops_stale_frames_and_counts_them():
    frames, max_latency = distinct_frames(40), 0.03
    source = live(ListReader(frames, interval=0.002), max_latency=max_latency)
    read, ages = [], []
    for timed in source.timed_frames():
        ages.append(time.monotonic() - timed.received)
        read.append(next(i for i, f in enumerate(frames) if f is timed.frame))
        time.sleep(0.02)  # 10x slower than the source
    assert len(read) + source.dropped == 40  # every frame read is either used or counted
    assert source.dropped >= 20 and read == sorted(read)  # newest frames win, order kept
    assert max(ages) <= max_latency
    assert source.stop_reason == "the list ended"


def test_a_stalled_source_stops_after_the_read_timeout_not_never():
    reader = ListReader(distinct_frames(2), stall=60)  # a read that does not return in time
    source = live(reader, read_timeout=0.3)
    started = time.monotonic()
    assert len(list(source)) == 2
    assert 0.3 <= time.monotonic() - started < 5
    assert source.stop_reason == "no frame from test for 0.3 s: the source stalled"
    assert not reader.closed.is_set()  # its thread is still in that read


def test_stop_ends_the_stream_after_the_frame_in_hand_with_the_first_reason():
    reader = ListReader(distinct_frames(10))
    source = live(reader)
    read = []
    for frame in source:
        read.append(frame)
        if len(read) == 3:
            source.stop("interrupted by SIGINT")
            source.stop("a later reason")
    assert len(read) == 3 and source.stop_reason == "interrupted by SIGINT"
    assert reader.closed.wait(5)


def test_a_change_of_frame_size_ends_the_stream():
    frames = distinct_frames(2) + distinct_frames(1, (SIZE[0], SIZE[1] + 2))
    source = live(ListReader(frames))
    assert len(list(source)) == 2
    assert source.stop_reason == "test changed its frame size from 32x24 to 34x24 (WxH)"


def test_bad_live_inputs_are_one_line_errors():
    with pytest.raises(VideoReadError, match=r"^raw frames on stdin \(input -\) need their size"):
        open_frame_source("-")
    with MjpegServer([]) as server:  # a free port once the server is gone
        url = server.url
    started = time.monotonic()
    with pytest.raises(VideoReadError, match=rf"^cannot open the stream {url} within 2 s"):
        open_frame_source(url, read_timeout=2)
    assert time.monotonic() - started < 10


@pytest.fixture(scope="module")
def bgr_frames() -> list[np.ndarray]:
    return [frame[:, :, ::-1].copy() for frame in distinct_frames(6, (48, 64))]


def decoded_jpegs(server: MjpegServer) -> list[np.ndarray]:
    """The served frames as the client should see them (RGB)."""
    return [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1] for j in server.jpegs]


def test_an_mjpeg_stream_whose_server_closes_ends_with_a_lost_connection(bgr_frames):
    with MjpegServer(bgr_frames, after="close", interval=0.01) as server:
        source = open_frame_source(server.url, read_timeout=5)
        assert (source.info.height, source.info.width) == (48, 64)
        read = list(source)
    assert len(read) == 6 and source.dropped == 0
    for frame, expected in zip(read, decoded_jpegs(server)):
        assert np.abs(frame.astype(float) - expected).mean() < JPEG_TOLERANCE
    assert source.stop_reason == f"the connection to {server.url} was lost (or the stream ended)"


def test_an_mjpeg_stream_that_stalls_stops_after_the_read_timeout(bgr_frames):
    with MjpegServer(bgr_frames[:3], after="stall") as server:
        source = open_frame_source(server.url, read_timeout=1)
        started = time.monotonic()
        assert len(list(source)) == 3
        assert time.monotonic() - started < 10
    assert source.stop_reason == f"no frame from {server.url} for 1 s: the source stalled"


def test_a_capture_reader_ends_when_its_capture_does():
    capture = cv2.VideoCapture()  # opened on nothing: read() fails at once
    with pytest.raises(StreamEnded, match="gone"):
        CaptureReader(capture, "gone").read()
