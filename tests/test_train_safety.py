"""train_net.py protects finished runs and reports bad data/checkpoints in one line (issue 13).

Every case fails before training starts, so each is a few seconds of start-up.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFIGS, REPO

from minvis.data.synthetic import SyntheticSpec, write_split

TINY_CONFIG = CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml"


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    write_split(root / "synthetic_ytvis", "train", 2, SyntheticSpec(num_frames=2), seed=0)
    write_split(root / "synthetic_ytvis", "val", 1, SyntheticSpec(num_frames=2), seed=0)
    return root


def train_net(datasets: Path, *args: object, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets), "OMP_NUM_THREADS": "1"}
    flags = ["--debug"] if debug else []  # flags before the KEY VALUE overrides
    command = [sys.executable, "train_net.py", *flags, "--config-file", str(TINY_CONFIG), *map(str, args)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("train_net.py: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def test_a_finished_run_is_not_trained_over(datasets_root, tmp_path):
    final = tmp_path / "model_final.pth"
    final.write_bytes(b"the user's finished model")
    (tmp_path / "config.yaml").write_text("the run's config")
    message = one_line_error(train_net(datasets_root, "OUTPUT_DIR", tmp_path))
    assert str(final) in message and "--resume" in message and "OUTPUT_DIR" in message
    assert final.read_bytes() == b"the user's finished model"
    assert (tmp_path / "config.yaml").read_text() == "the run's config"
    # Starting from the weights a run would write is refused even with --overwrite.
    message = one_line_error(
        train_net(datasets_root, "--overwrite", "OUTPUT_DIR", tmp_path, "MODEL.WEIGHTS", final)
    )
    assert "would replace the input" in message


def test_eval_only_keeps_the_training_config_and_reports_a_bad_checkpoint(datasets_root, tmp_path):
    (tmp_path / "config.yaml").write_text("the run's config")
    corrupt = tmp_path / "model_final.pth"
    corrupt.write_bytes(bytes(range(256)) * 4)
    proc = train_net(datasets_root, "--eval-only", "OUTPUT_DIR", tmp_path, "MODEL.WEIGHTS", corrupt)
    message = one_line_error(proc)
    assert f"{corrupt}: not a readable checkpoint" in message and "weights_only" not in proc.stderr
    assert (tmp_path / "config.yaml").read_text() == "the run's config"
    assert (tmp_path / "config_eval.yaml").is_file()
    # --debug shows the traceback.
    proc = train_net(
        datasets_root, "--eval-only", "OUTPUT_DIR", tmp_path, "MODEL.WEIGHTS", corrupt, debug=True
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "CheckpointLoadError" in proc.stderr


def test_a_missing_dataset_names_its_path_and_the_fixes(tmp_path):
    message = one_line_error(train_net(tmp_path / "nothing", "OUTPUT_DIR", tmp_path / "out"))
    expected = tmp_path / "nothing" / "synthetic_ytvis" / "train.json"
    assert str(expected) in message
    assert "DETECTRON2_DATASETS" in message and "make_synthetic_ytvis.py" in message


def test_a_dataset_without_objects_fails_at_training_start(datasets_root, tmp_path):
    root = tmp_path / "datasets"
    (root / "synthetic_ytvis").mkdir(parents=True)
    data = json.loads((datasets_root / "synthetic_ytvis" / "train.json").read_text())
    data["annotations"] = []
    (root / "synthetic_ytvis" / "train.json").write_text(json.dumps(data))
    (root / "synthetic_ytvis" / "train").symlink_to(datasets_root / "synthetic_ytvis" / "train")
    message = one_line_error(train_net(root, "OUTPUT_DIR", tmp_path / "out"))
    assert "train.json: no object is annotated in any of its 2 videos" in message
