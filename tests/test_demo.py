"""demo/demo.py end to end, headless, as a subprocess: outputs and error handling."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

from minvis.data.synthetic import SyntheticSpec, render_video, video_rng, write_video_file
from minvis.ytvis_format import load_results

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "demo.py"
TINY_CONFIG = REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"
VTEST = REPO.parent / "shared" / "data" / "vtest.avi"


def run_demo(*args: str | Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(DEMO), "--config-file", str(TINY_CONFIG), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)


def read_back(path: Path) -> tuple[int, tuple[int, int]]:
    """Frame count and (height, width) of a written video, by decoding it."""
    capture = cv2.VideoCapture(str(path))
    count, size = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, size = count + 1, frame.shape[:2]
    capture.release()
    return count, size


def check_outputs(output: Path, frames: int, size: tuple[int, int]) -> list[dict]:
    assert read_back(output / "annotated.mp4") == (frames, size)
    results = load_results(output / "results.json")  # validates the submission format
    for entry in results:
        assert entry["video_id"] == 1 and entry["category_id"] in (1, 2, 3, 4)
        assert len(entry["segmentations"]) == frames
        assert any(s is not None and s["size"] == list(size) for s in entry["segmentations"])
    return results


@pytest.fixture(scope="module")
def synthetic_mp4(tmp_path_factory) -> Path:
    video = render_video(video_rng(0, "demo_test", 0), SyntheticSpec(num_frames=8, height=96, width=128))
    path = tmp_path_factory.mktemp("input") / "synthetic.mp4"
    write_video_file(path, video.frames, fps=6.0)
    return path


def test_demo_on_a_synthetic_mp4(synthetic_mp4, tmp_path):
    # Random weights: the threshold 0 makes every non-empty track show up.
    done = run_demo(
        "--input", synthetic_mp4, "--output", tmp_path, "--confidence-threshold", 0, "--save-frames"
    )
    assert done.returncode == 0, done.stderr
    results = check_outputs(tmp_path, frames=8, size=(96, 128))
    assert results  # something was tracked
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"{i:05d}.jpg" for i in range(8)]
    assert "frames/s" in done.stdout


def test_demo_on_the_first_frames_of_vtest(tmp_path):
    done = run_demo(
        "--input", VTEST, "--output", tmp_path, "--max-frames", 20, "--confidence-threshold", 0
    )
    assert done.returncode == 0, done.stderr
    check_outputs(tmp_path, frames=20, size=(576, 768))


def test_demo_refuses_to_overwrite(synthetic_mp4, tmp_path):
    (tmp_path / "results.json").write_text("[]")
    done = run_demo("--input", synthetic_mp4, "--output", tmp_path, "--max-frames", 2)
    assert done.returncode == 2
    assert "--overwrite" in done.stderr and "Traceback" not in done.stderr
    done = run_demo("--input", synthetic_mp4, "--output", tmp_path, "--max-frames", 2, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "results.json").read_text()) is not None


@pytest.mark.parametrize(
    "case, expected",
    [
        ("unreadable", "cannot open video"),
        ("missing_input", "does not exist"),
        ("missing_weights", "missing.pth (MODEL.WEIGHTS) does not exist"),
        ("mismatched_weights", "does not match the model built from the config"),
        ("bad_key", "Non-existent key"),
    ],
)
def test_demo_errors_exit_2_without_traceback(case, expected, synthetic_mp4, tmp_path):
    args: list[str | Path] = ["--input", synthetic_mp4, "--output", tmp_path / "out"]
    if case == "unreadable":
        broken = tmp_path / "broken.mp4"
        broken.write_bytes(b"not a video" * 50)
        args[1] = broken
    elif case == "missing_input":
        args[1] = tmp_path / "nothing.avi"
    elif case == "missing_weights":
        args += ["--opts", "MODEL.WEIGHTS", tmp_path / "missing.pth"]
    elif case == "mismatched_weights":
        torch.save(
            {"model": {"sem_seg_head.predictor.class_embed.weight": torch.zeros(7, 64)}},
            tmp_path / "w.pth",
        )
        args += ["--opts", "MODEL.WEIGHTS", tmp_path / "w.pth"]
    else:
        args += ["--opts", "MODEL.NO_SUCH_KEY", 1]
    done = run_demo(*args)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr
