"""Faults against demo/demo.py's outputs (issue 22): a full disk, a second demo into the same
folder, a kill mid-run and links of the input never cost the previous outputs."""

import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from test_faults_output_paths import error_line, names, run_python

from minvis.data.synthetic import SyntheticSpec, render_video, video_rng, write_video_file
from minvis.output_paths import LOCK_NAME

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "demo.py"
TINY_CONFIG = REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    video = render_video(video_rng(0, "faults", 0), SyntheticSpec(num_frames=16, height=64, width=96))
    path = tmp_path_factory.mktemp("input") / "clip.avi"
    write_video_file(path, video.frames, fps=6.0)
    return path


def demo_args(clip: Path, output: Path, *extra: str | int) -> list[str | Path]:
    return [DEMO, "--config-file", TINY_CONFIG, "--input", clip, "--output", output, *map(str, extra)]


def previous_outputs(folder: Path) -> dict[str, bytes]:
    """A good earlier run's outputs in ``folder``, by name."""
    folder.mkdir()
    video = render_video(video_rng(1, "faults", 0), SyntheticSpec(num_frames=3, height=64, width=96))
    write_video_file(folder / "annotated.mp4", video.frames, fps=6.0)
    (folder / "results.json").write_text("[]\n")
    return contents(folder)


def contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def frame_count(video: Path) -> int:
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def start_demo(*args: str | Path | int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, *map(str, args)]
    return subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not condition() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert proc.poll() is None, "the demo ended before the test could catch it mid-run"


def test_a_full_disk_keeps_the_previous_video_and_results(clip, tmp_path):
    """OpenCV's writer fails silently on a full disk: the video is read back before it replaces anything."""
    out = tmp_path / "out"
    before = previous_outputs(out)
    done = run_python(demo_args(clip, out, "--max-frames", 3, "--overwrite"), max_file_bytes=4096)
    assert done.returncode == 2, done.stderr
    assert error_line(done.stderr) == (
        f"error: cannot write {out / 'annotated.mp4'}: OpenCV reads back 0 of the 3 frames written "
        "and cannot decode the last one (a full disk?)"
    )
    assert contents(out) == before  # nothing replaced, no partial files, no lock left


def test_a_second_demo_into_the_same_folder_is_refused(clip, tmp_path):
    out = tmp_path / "out"
    first = start_demo(*demo_args(clip, out, "--max-frames", 12))
    try:
        lock = out / LOCK_NAME
        wait_for(lambda: lock.exists() and lock.read_text() == f"{first.pid}\n", first)
        first.send_signal(signal.SIGSTOP)  # mid-run for as long as the second one needs
        second = run_python(demo_args(clip, out, "--max-frames", 3, "--overwrite"))
    finally:
        first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=300)
    assert second.returncode == 2
    assert error_line(second.stderr) == (
        f"error: {out} is in use by another run (pid {first.pid}); "
        "wait for it to finish or choose another output folder"
    )
    assert first.returncode == 0, stderr
    assert names(out) == ["annotated.mp4", "results.json"] and frame_count(out / "annotated.mp4") == 12


def test_a_demo_killed_mid_run_keeps_the_previous_outputs_and_blocks_no_rerun(clip, tmp_path):
    out = tmp_path / "out"
    before = previous_outputs(out)
    proc = start_demo(*demo_args(clip, out, "--overwrite"))
    wait_for(lambda: (out / "annotated.partial.mp4").exists(), proc)
    proc.kill()
    proc.communicate()
    assert {name: data for name, data in contents(out).items() if name in before} == before
    rerun = run_python(demo_args(clip, out, "--max-frames", 3, "--overwrite"))  # not blocked by leftovers
    assert rerun.returncode == 0, rerun.stderr
    assert names(out) == ["annotated.mp4", "results.json"] and frame_count(out / "annotated.mp4") == 3


@pytest.mark.filterwarnings("ignore:MODEL.WEIGHTS is empty")
@pytest.mark.parametrize("link", ["hardlink_to", "symlink_to"])
def test_an_output_may_not_be_a_link_of_the_input(clip, tmp_path, capsys, link):
    out = tmp_path / "out"
    out.mkdir()
    getattr(out / "annotated.mp4", link)(clip)
    before = clip.read_bytes()
    main = runpy.run_path(str(DEMO))["main"]
    assert main([str(a) for a in demo_args(clip, out, "--overwrite")[1:]]) == 2
    assert "would replace the input" in error_line(capsys.readouterr().err)
    assert clip.read_bytes() == before and names(out) == ["annotated.mp4"]
