"""Bad data is one line naming the file (issue 22): a frame that cannot be decoded (a truncated
JPEG) met by a data-loader worker mid-training, and a video of no frames, refused when its
annotation file is loaded."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY_CONFIG

from minvis.config import build_config
from minvis.data import YTVISDatasetMapper, YTVISFormatError, load_ytvis_json
from minvis.data.synthetic import SyntheticSpec, write_split
from minvis.data.video_io import VideoReadError


@pytest.fixture(scope="module")
def truncated(tmp_path_factory) -> Path:
    """``$DETECTRON2_DATASETS`` with 2 train videos whose every JPEG frame lost its second half."""
    root = tmp_path_factory.mktemp("datasets")
    write_split(root / "synthetic_ytvis", "train", 2, SyntheticSpec(num_frames=2), seed=0)
    for frame in (root / "synthetic_ytvis" / "train").rglob("*.jpg"):
        data = frame.read_bytes()
        frame.write_bytes(data[: len(data) // 2])
    return root


def test_the_mapper_names_the_frame_it_cannot_decode(truncated):
    videos = load_ytvis_json(
        truncated / "synthetic_ytvis" / "train.json", truncated / "synthetic_ytvis" / "train" / "JPEGImages"
    )
    mapper = YTVISDatasetMapper(build_config(str(TINY_CONFIG)), is_train=False)
    path = videos[0]["file_names"][0]
    with pytest.raises(
        VideoReadError, match=rf"^video 1 frame 0: cannot read image {path}: image file is truncated"
    ):
        mapper(videos[0])


def test_a_truncated_frame_met_by_a_loader_worker_is_one_line(truncated, tmp_path):
    env = {**os.environ, "DETECTRON2_DATASETS": str(truncated), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "train_net.py", "--config-file", str(TINY_CONFIG), "OUTPUT_DIR", str(tmp_path)]
    command += ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "DATALOADER.NUM_WORKERS", "1"]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr  # the log (stdout) too
    assert proc.returncode == 2 and "Traceback" not in output, output[-3000:]
    message = proc.stderr.splitlines()[-1]
    assert message.startswith("train_net.py: error: video ") and "DataLoader" not in message
    frames = list((truncated / "synthetic_ytvis" / "train").rglob("*.jpg"))
    assert any(f"cannot read image {frame}: image file is truncated" in message for frame in frames), message


def test_a_video_without_frames_is_refused_when_its_json_is_loaded(tmp_path):
    write_split(tmp_path, "train", 2, SyntheticSpec(num_frames=2, height=16, width=16), seed=0)
    json_file = tmp_path / "train.json"
    data = json.loads(json_file.read_text())
    data["videos"][1].update(file_names=[], length=0)
    data["annotations"] = [a for a in data["annotations"] if a["video_id"] != 2]
    json_file.write_text(json.dumps(data))
    with pytest.raises(YTVISFormatError) as error:
        load_ytvis_json(json_file, tmp_path / "train" / "JPEGImages")
    assert str(error.value) == f"{json_file}: video 2: the video has no frames (length 0)."
