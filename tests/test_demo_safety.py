"""demo/demo.py and the video reader/writer: user files are safe, partial outputs never
look complete, truncated or odd-sized videos are not silently mishandled (issue 13)."""

import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from minvis.data.synthetic import SyntheticSpec, render_video, video_rng, write_video_file
from minvis.data.video_io import VideoFileSource, VideoReadError, VideoWriter

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "demo.py"
TINY_CONFIG = REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"


def demo_command(*args: str | Path) -> list[str]:
    return [sys.executable, str(DEMO), "--config-file", str(TINY_CONFIG), *map(str, args)]


def run_demo(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(demo_command(*args), capture_output=True, text=True, timeout=600, cwd=REPO)


@pytest.fixture(scope="module")
def frames_video(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    video = render_video(video_rng(0, "demo_safety", 0), SyntheticSpec(num_frames=40, height=64, width=96))
    path = tmp_path_factory.mktemp("input") / "clip.avi"
    write_video_file(path, video.frames, fps=6.0)
    return path, video.frames


def test_overwrite_never_deletes_the_input(frames_video, tmp_path):
    _, frames = frames_video
    own = tmp_path / "frames"  # the user's frames at the demo's output name
    own.mkdir()
    for i, frame in enumerate(frames[:3]):
        cv2.imwrite(str(own / f"{i}.png"), frame[:, :, ::-1])
    for extra in ([], ["--overwrite"], ["--overwrite", "--save-frames"]):
        done = run_demo("--input", own, "--output", tmp_path, *extra)
        assert done.returncode == 2, done.stderr
        assert "would replace the input" in done.stderr and "previous run" not in done.stderr
        assert len(list(own.iterdir())) == 3
    video = tmp_path / "annotated.mp4"  # a video at the output name, as input
    video.write_bytes(frames_video[0].read_bytes())
    done = run_demo("--input", video, "--output", tmp_path, "--overwrite")
    assert done.returncode == 2 and "would replace the input" in done.stderr
    assert video.read_bytes() == frames_video[0].read_bytes()


@pytest.fixture(scope="module")
def long_video(frames_video, tmp_path_factory) -> Path:
    """The clip repeated to 1,200 frames: the demo needs many seconds for it on any machine,
    so a signal sent after its first frames always lands mid-run."""
    path = tmp_path_factory.mktemp("input") / "long.avi"
    write_video_file(path, frames_video[1] * 30, fps=6.0)
    return path


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_leaves_no_output_and_no_temporary_files(sig, long_video, tmp_path):
    out, spool_root = tmp_path / "out", tmp_path / "tmp"
    spool_root.mkdir()
    env = {"TMPDIR": str(spool_root), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    # A shell that starts jobs in the background (nohup, CI runners) makes them ignore
    # SIGINT, and the child would inherit that: give it the default a terminal user has.
    proc = subprocess.Popen(
        demo_command("--input", long_video, "--output", out, "--save-frames"),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    partial = out / "frames.partial"
    deadline = time.monotonic() + 300
    while not (partial.is_dir() and len(list(partial.iterdir())) >= 2) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert proc.poll() is None, "the demo ended before it could be interrupted"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == []  # no annotated.mp4, no partial files
    assert not [p for p in spool_root.iterdir() if p.name.startswith("minvis_")]  # the track spool's


def test_a_truncated_video_is_an_error(frames_video, tmp_path):
    data = frames_video[0].read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 3])
    source = VideoFileSource(cut)
    assert source.info.num_frames == 40
    with pytest.raises(VideoReadError, match=r"cut\.avi: decoding stopped after frame \d+ of the 40"):
        sum(1 for _ in source)
    done = run_demo("--input", cut, "--output", tmp_path / "out")
    assert done.returncode == 2 and "truncated" in done.stderr
    assert list((tmp_path / "out").iterdir()) == []  # nothing blocks the rerun
    assert sum(1 for _ in VideoFileSource(frames_video[0])) == 40  # a whole video is fine


def test_odd_frame_sizes_keep_every_pixel(tmp_path):
    frame = np.random.default_rng(0).integers(0, 255, (33, 47, 3), dtype=np.uint8)
    with (
        pytest.warns(RuntimeWarning, match="padded to 48x34"),
        VideoWriter(tmp_path / "odd.avi", 5, (33, 47)) as w,
    ):
        w.write(frame)
    ok, read = cv2.VideoCapture(str(tmp_path / "odd.avi")).read()
    assert ok and read.shape == (34, 48, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VideoWriter(tmp_path / "even.avi", 5, (32, 46)).close()


def test_demo_warns_without_weights_and_about_amp_on_cpu(frames_video, tmp_path):
    done = run_demo("--input", frames_video[0], "--output", tmp_path, "--max-frames", 2, "--amp")
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning: MODEL.WEIGHTS is empty" in done.stderr
    assert "RuntimeWarning: --amp has no effect on cpu" in done.stderr


def test_fewer_decoder_layers_than_the_checkpoint_fail(tmp_path):
    from minvis.config import build_config
    from minvis.engine import Trainer
    from minvis.modeling import CheckpointLoadError, MinVISCheckpointer

    cfg = build_config(str(TINY_CONFIG), ["MODEL.DEVICE", "cpu"])
    layers = cfg.MODEL.MASK_FORMER.DEC_LAYERS
    torch.save({"model": Trainer.build_model(cfg).state_dict()}, tmp_path / "full.pth")
    small = build_config(
        str(TINY_CONFIG), ["MODEL.DEVICE", "cpu", "MODEL.MASK_FORMER.DEC_LAYERS", layers - 1]
    )
    with pytest.raises(CheckpointLoadError, match=r"0 missing keys, [1-9]\d* unexpected keys"):
        MinVISCheckpointer(Trainer.build_model(small), strict=True).load(str(tmp_path / "full.pth"))
    # A shape mismatch is listed once, as a mismatch (not also as a missing key).
    state = Trainer.build_model(cfg).state_dict()
    key = next(k for k in state if k.endswith("class_embed.weight"))
    state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
    torch.save({"model": state}, tmp_path / "shape.pth")
    with pytest.raises(CheckpointLoadError, match=r"0 missing keys, 0 unexpected keys, 1 shape mismatches"):
        MinVISCheckpointer(Trainer.build_model(cfg), strict=True).load(str(tmp_path / "shape.pth"))


def test_a_corrupt_checkpoint_does_not_advise_the_unsafe_option(tmp_path):
    from minvis.modeling import CheckpointLoadError
    from minvis.modeling.checkpoint import load_pth_checkpoint

    for name, data in (("junk.pth", bytes(range(256)) * 10), ("text.pth", b"hello")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointLoadError) as info:
            load_pth_checkpoint(str(tmp_path / name))
        assert f"{name}: not a readable checkpoint" in str(info.value)
        assert "weights_only" not in str(info.value)
