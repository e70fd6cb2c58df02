"""demo/demo.py on live inputs, end to end: an MJPEG stream served on 127.0.0.1 that closes,
stalls or runs until Ctrl-C, and raw frames piped on stdin."""

import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from test_live_source import MjpegServer

from minvis.data.synthetic import SyntheticSpec, render_video, video_rng, write_video_file

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "demo.py"
TINY_CONFIG = REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"
HEIGHT, WIDTH = 64, 96
STARTUP_LIMIT_S = 300  # the longest a demo may take to build its model and start reading


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Random but fixed weights of the tiny model, so that two runs can be compared."""
    from detectron2.modeling import build_model

    from minvis.config import build_config

    torch.manual_seed(0)
    model = build_model(build_config(str(TINY_CONFIG), ["MODEL.DEVICE", "cpu"]))
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    video = render_video(video_rng(0, "live", 0), SyntheticSpec(num_frames=12, height=HEIGHT, width=WIDTH))
    path = tmp_path_factory.mktemp("input") / "clip.avi"
    write_video_file(path, video.frames, fps=6.0)
    return path


@pytest.fixture(scope="module")
def bgr_frames(clip) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    return frames


def demo_command(weights: Path, input_: str | Path, output: Path, *extra: str | int) -> list[str]:
    return [
        sys.executable,
        str(DEMO),
        *["--config-file", str(TINY_CONFIG), "--input", str(input_), "--output", str(output)],
        *["--confidence-threshold", "0", *map(str, extra), "--opts", "MODEL.WEIGHTS", str(weights)],
    ]


def demo_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def run_demo(weights: Path, input_: str | Path, output: Path, *extra: str | int, stdin: bytes = b""):
    command = demo_command(weights, input_, output, *extra)
    return subprocess.run(command, input=stdin, capture_output=True, env=demo_env(), timeout=600, cwd=REPO)


def summary(stdout: bytes) -> tuple[str, int, int]:
    """The stop line and the frame and drop counts of the demo's last two lines."""
    stopped, counts = stdout.decode().splitlines()[-2:]
    frames, dropped = counts.split(" frames in ")[0], counts.split(" dropped, ")[0].rsplit(", ", 1)[1]
    return stopped, int(frames), int(dropped)


def video_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def check_outputs(output: Path, frames: int) -> list[dict]:
    """The finished outputs of a ``frames``-frame run agree with each other; the track log's lines."""
    assert sorted(p.name for p in output.iterdir()) == ["annotated.mp4", "results.json", "tracks.jsonl"]
    assert video_frames(output / "annotated.mp4") == frames
    lines = [json.loads(line) for line in (output / "tracks.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(frames))
    results = json.loads((output / "results.json").read_text())
    assert all(len(entry["segmentations"]) == frames for entry in results)
    submitted = {  # (frame, RLE) of every non-empty mask of results.json
        (t, rle["counts"])
        for entry in results
        for t, rle in enumerate(entry["segmentations"])
        if rle and mask_utils.area(rle) > 0
    }
    logged = {(line["frame"], track["segmentation"]["counts"]) for line in lines for track in line["tracks"]}
    assert logged == submitted
    for track in (track for line in lines for track in line["tracks"]):
        rows, columns = np.nonzero(mask_utils.decode(track["segmentation"]))
        x, y = columns.min(), rows.min()
        assert track["bbox"] == [x, y, columns.max() + 1 - x, rows.max() + 1 - y]
        assert track["class"] in {"circle", "square", "triangle", "star"} and 0 <= track["score"] <= 1
    return lines


def test_a_stream_whose_server_closes_ends_cleanly_with_all_outputs(weights, bgr_frames, tmp_path):
    started = time.time()
    with MjpegServer(bgr_frames[:4], after="close", interval=0.02) as server:
        done = run_demo(weights, server.url, tmp_path, "--show")
    assert done.returncode == 0, done.stderr.decode()
    stopped, frames, dropped = summary(done.stdout)
    assert stopped == f"stopped: the connection to {server.url} was lost (or the stream ended)"
    assert (frames, dropped) == (4, 0)
    assert "--show: no display ($DISPLAY and $WAYLAND_DISPLAY are not set)" in done.stderr.decode()
    lines = check_outputs(tmp_path, frames=4)
    times = [line["time"] for line in lines]  # when each frame was read, since the epoch
    assert started <= times[0] and times == sorted(times) and times[-1] <= time.time()


def test_a_stalled_stream_stops_after_the_read_timeout_and_slow_inference_drops_frames(
    weights, bgr_frames, tmp_path
):
    """12 frames at once, then silence: the model cannot keep up within 0.2 s of latency."""
    with MjpegServer(bgr_frames, after="stall") as server:
        done = run_demo(weights, server.url, tmp_path, "--max-latency", 0.2, "--read-timeout", 1)
    assert done.returncode == 0, done.stderr.decode()
    stopped, frames, dropped = summary(done.stdout)
    assert stopped == f"stopped: no frame from {server.url} for 1 s: the source stalled"
    assert frames + dropped == 12 and dropped > 0
    check_outputs(tmp_path, frames=frames)


@pytest.fixture(scope="module")
def file_run(weights, clip, tmp_path_factory) -> Path:
    """The output folder of the demo on the first 3 frames of the clip file, with the track log."""
    output = tmp_path_factory.mktemp("file_run")
    done = run_demo(weights, clip, output, "--max-frames", 3, "--track-log")
    assert done.returncode == 0, done.stderr.decode()
    return output


def test_raw_frames_on_stdin_give_the_results_of_the_same_frames_in_a_file(
    weights, file_run, bgr_frames, tmp_path
):
    """As ``ffmpeg -i clip.avi -f rawvideo -pix_fmt bgr24 - | demo.py --input - ...`` would."""
    raw = b"".join(frame.tobytes() for frame in bgr_frames[:3])
    raw_options = ["--input-size", f"{WIDTH}x{HEIGHT}", "--pixel-format", "bgr24"]
    piped = run_demo(weights, "-", tmp_path / "pipe", *raw_options, stdin=raw)
    assert piped.returncode == 0, piped.stderr.decode()
    assert summary(piped.stdout) == ("stopped: end of input on stdin", 3, 0)
    file_lines, pipe_lines = check_outputs(file_run, 3), check_outputs(tmp_path / "pipe", 3)
    assert (tmp_path / "pipe" / "results.json").read_bytes() == (file_run / "results.json").read_bytes()
    assert [line["tracks"] for line in pipe_lines] == [line["tracks"] for line in file_lines]
    assert [line["time"] for line in file_lines] == [0, 1 / 6, 2 / 6]  # a file's frames: their position


def test_ctrl_c_stops_a_stream_and_writes_the_outputs_the_log_having_each_frame_at_once(
    weights, bgr_frames, tmp_path
):
    """3 frames, then a silent connection: while the demo waits for more, the growing log (what
    ``tail -f`` follows) holds the 3 frames' lines, whole; Ctrl-C then ends the run, with outputs."""
    with MjpegServer(bgr_frames[:3], after="stall") as server:
        # lines shorter than a write buffer, so that a buffered log would lag behind
        options = ["--confidence-threshold", 0.4, "--read-timeout", STARTUP_LIMIT_S]
        command = demo_command(weights, server.url, tmp_path, *options)
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        proc = subprocess.Popen(command, env=demo_env(), cwd=REPO, **pipes)
        growing = tmp_path / "tracks.partial.jsonl"
        deadline, logged = time.monotonic() + STARTUP_LIMIT_S, ""
        while logged.count("\n") < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1].decode()
            time.sleep(0.01)
            logged = growing.read_text() if growing.exists() else ""
            assert logged.endswith("\n") or not logged  # whole lines only
        assert [json.loads(line)["frame"] for line in logged.splitlines()] == [0, 1, 2]
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=STARTUP_LIMIT_S)
    assert proc.returncode == 0, stderr.decode()
    assert summary(stdout) == ("stopped: interrupted by SIGINT", 3, 0)
    check_outputs(tmp_path, frames=3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "-"], "--input - (raw frames on stdin) and --input-size WxH go together"),
        (["--input", "-", "--input-size", "64x"], "expected WIDTHxHEIGHT such as 640x480, got '64x'"),
        (["--input", "x.mp4", "--max-latency", "1"], "--max-latency applies to live inputs"),
        (["--input", "0", "--mode", "video"], "--mode video reads the input twice"),
        (["--input", "0", "--read-timeout", "0"], "--max-latency and --read-timeout must be > 0"),
    ],
)
def test_bad_live_options_are_one_line_errors(args, message, tmp_path, capsys):
    main = runpy.run_path(str(DEMO))["main"]
    with pytest.raises(SystemExit) as exit_:
        main(["--config-file", str(TINY_CONFIG), "--output", str(tmp_path / "out"), *args])
    assert exit_.value.code == 2 and message in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.filterwarnings("ignore:MODEL.WEIGHTS is empty")
def test_a_stream_that_cannot_be_opened_is_a_one_line_error(tmp_path, capsys):
    with MjpegServer([]) as server:
        url = server.url  # nothing listens there once the server is gone
    main = runpy.run_path(str(DEMO))["main"]
    args = ["--config-file", str(TINY_CONFIG), "--input", url, "--output", str(tmp_path)]
    assert main([*args, "--read-timeout", "2"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: cannot open the stream {url} within 2 s (is the address right, the server up?)"
    )
    assert not any(tmp_path.iterdir())
