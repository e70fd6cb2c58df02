"""Frame sources (video files, folders, glob patterns) and the video writer."""

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from minvis.data.video_io import (
    ImageSequenceSource,
    VideoFileSource,
    VideoReadError,
    VideoWriteError,
    VideoWriter,
    natural_sort_key,
    open_frame_source,
)

VTEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "vtest.avi"


def _frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Distinct RGB frames: a bright square moving right on a coloured background."""
    frames = []
    for t in range(count):
        frame = np.full((height, width, 3), (40, 90, 160), dtype=np.uint8)
        frame[10:26, 4 + 3 * t : 20 + 3 * t] = 250
        frames.append(frame)
    return frames


def test_vtest_avi_streams_rgb_frames_with_its_metadata():
    source = open_frame_source(VTEST)
    assert isinstance(source, VideoFileSource)
    assert (source.info.height, source.info.width) == (576, 768)
    assert source.info.fps == pytest.approx(10.0)
    assert source.info.num_frames == 795
    first = list(itertools.islice(source, 3))
    assert [f.shape for f in first] == [(576, 768, 3)] * 3
    assert all(f.dtype == np.uint8 for f in first)
    # Each iteration decodes afresh, in RGB order (OpenCV decodes BGR).
    capture = cv2.VideoCapture(str(VTEST))
    _, bgr = capture.read()
    capture.release()
    np.testing.assert_array_equal(next(iter(source)), bgr[:, :, ::-1])


def test_vtest_avi_decodes_all_795_frames():
    assert sum(1 for _ in open_frame_source(VTEST)) == 795


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_written_video_reads_back(tmp_path, suffix):
    path = tmp_path / f"clip{suffix}"
    frames = _frames(9)
    with VideoWriter(path, fps=5.0, size=(48, 64)) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.num_frames == 9
    source = open_frame_source(path)
    assert (source.info.height, source.info.width, source.info.fps) == (48, 64, 5.0)
    decoded = list(source)
    assert len(decoded) == 9
    # Lossy codecs: compare loosely, the moving square must be where it was written.
    for ours, written in zip(decoded, frames):
        assert np.abs(ours.astype(int) - written.astype(int)).mean() < 12


def test_folder_is_read_in_natural_order(tmp_path):
    frames = _frames(12)
    for t, frame in enumerate(frames):  # 0.png .. 11.png: "10" must come after "9"
        cv2.imwrite(str(tmp_path / f"{t}.png"), frame[:, :, ::-1])
    (tmp_path / "notes.txt").write_text("not a frame")
    source = open_frame_source(tmp_path)
    assert isinstance(source, ImageSequenceSource)
    assert source.info.num_frames == 12 and source.info.fps is None
    for ours, written in zip(source, frames, strict=True):
        np.testing.assert_array_equal(ours, written)  # png is lossless


def test_glob_pattern_selects_frames(tmp_path):
    frames = _frames(5)
    for t, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"frame_{t}.png"), frame[:, :, ::-1])
        cv2.imwrite(str(tmp_path / f"other_{t}.png"), frame[:, :, ::-1])
    source = open_frame_source(str(tmp_path / "frame_*.png"))
    assert source.info.num_frames == 5
    assert [Path(f).name for f in source.files] == [f"frame_{t}.png" for t in range(5)]


def test_natural_sort_key():
    names = ["f10.jpg", "f2.jpg", "F1.jpg", "f2a.jpg"]
    assert sorted(names, key=natural_sort_key) == ["F1.jpg", "f2.jpg", "f2a.jpg", "f10.jpg"]


def test_unreadable_inputs_name_the_path(tmp_path):
    with pytest.raises(VideoReadError, match="missing.mp4 does not exist"):
        open_frame_source(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoReadError, match="garbage.mp4"):
        open_frame_source(garbage)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty.avi"):
        open_frame_source(empty)
    with pytest.raises(VideoReadError, match="no image files"):
        open_frame_source(tmp_path)
    with pytest.raises(VideoReadError, match="matches no file"):
        open_frame_source(str(tmp_path / "*.jpg"))
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(VideoReadError, match="notes.txt is neither a video file"):
        open_frame_source(notes)


def test_frames_of_different_sizes_and_broken_images(tmp_path):
    cv2.imwrite(str(tmp_path / "0.png"), _frames(1)[0])
    cv2.imwrite(str(tmp_path / "1.png"), _frames(1, height=32)[0])
    with pytest.raises(VideoReadError, match=r"1.png is 64x32 \(WxH\)"):
        list(open_frame_source(tmp_path))
    (tmp_path / "1.png").write_bytes(b"broken")
    with pytest.raises(VideoReadError, match="cannot read image .*1.png"):
        list(open_frame_source(tmp_path))


def test_writer_errors(tmp_path):
    with pytest.raises(VideoWriteError, match="unknown video extension '.gif'"):
        VideoWriter(tmp_path / "out.gif", fps=5, size=(48, 64))
    with pytest.raises(VideoWriteError, match="no_such_dir"):
        VideoWriter(tmp_path / "no_such_dir" / "out.mp4", fps=5, size=(48, 64))
    with VideoWriter(tmp_path / "out.mp4", fps=5, size=(48, 64)) as writer:
        with pytest.raises(VideoWriteError, match="expected uint8 frames of shape"):
            writer.write(np.zeros((32, 64, 3), dtype=np.uint8))
