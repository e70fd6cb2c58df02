"""``train_net.py --eval-only`` follows the output rules (issue 22): it evaluates the weights it
is asked for, a training folder's last checkpoint only with ``--resume``, random weights only
for ``MODEL.WEIGHTS ''`` on the command line, and replaces earlier results only with
``--overwrite``. Refusals run ``train_net.cli`` in this process; evaluations are real processes.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_CONFIG
from detectron2.modeling import build_model

from minvis.config import build_config
from minvis.data.synthetic import SyntheticSpec, write_split

spec = importlib.util.spec_from_file_location("train_net", REPO / "train_net.py")
train_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_net)

RESULTS = ("results.json", "results.zip", "metrics.json")


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    write_split(root / "synthetic_ytvis", "val", 1, SyntheticSpec(num_frames=2), seed=0)
    return root


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """A training folder: model_final.pth (weights of a fresh tiny model), last_checkpoint and
    the run's evaluation results."""
    run = tmp_path / "run"
    (run / "inference").mkdir(parents=True)
    model = build_model(build_config(str(TINY_CONFIG)))
    torch.save({"model": model.state_dict(), "iteration": 9}, run / "model_final.pth")
    (run / "last_checkpoint").write_text("model_final.pth")
    for name in RESULTS:
        (run / "inference" / name).write_text(f"the run's {name}")
    return run


def results_kept(run: Path) -> bool:
    return all((run / "inference" / name).read_text() == f"the run's {name}" for name in RESULTS)


def refusal(capsys, *args: object) -> str:
    """The one error line of ``train_net.py --eval-only ARGS`` on the tiny config (exit code 2)."""
    code = train_net.cli(["--eval-only", "--config-file", str(TINY_CONFIG), *map(str, args)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-3000:]
    (line,) = [line for line in err.splitlines() if line.startswith("train_net.py: error: ")]
    return line


def evaluate(datasets: Path, *args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "train_net.py", "--eval-only", "--config-file", str(TINY_CONFIG)]
    command += [*map(str, args), "DATALOADER.NUM_WORKERS", "0"]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return proc


def test_a_training_folder_without_weights_is_refused(finished_run, capsys):
    message = refusal(capsys, "OUTPUT_DIR", finished_run)
    assert "MODEL.WEIGHTS is empty" in message and "--resume" in message
    assert str(finished_run / "model_final.pth") in message
    assert results_kept(finished_run) and not (finished_run / "config_eval.yaml").exists()


def test_no_weights_at_all_is_refused(tmp_path, capsys):
    message = refusal(capsys, "OUTPUT_DIR", tmp_path / "out")
    assert "--eval-only needs weights and MODEL.WEIGHTS is empty; pass MODEL.WEIGHTS" in message
    assert not (tmp_path / "out").exists()


def test_earlier_results_are_replaced_only_with_overwrite(finished_run, datasets_root, capsys):
    message = refusal(capsys, "--resume", "OUTPUT_DIR", finished_run)
    assert str(finished_run / "inference" / "results.json") in message and "--overwrite" in message
    assert results_kept(finished_run)
    # With --overwrite, --resume evaluates the run's last checkpoint, all of it.
    proc = evaluate(datasets_root, "--resume", "--overwrite", "OUTPUT_DIR", finished_run)
    loaded = f"tensors loaded from {finished_run / 'model_final.pth'}: backbone 318/318, sem_seg_head 120/120"
    assert loaded in proc.stdout + proc.stderr
    assert json.loads((finished_run / "inference" / "results.json").read_text()) != []


def test_random_weights_only_when_asked_on_the_command_line(datasets_root, tmp_path):
    proc = evaluate(datasets_root, "OUTPUT_DIR", tmp_path, "MODEL.WEIGHTS", "")
    assert "MODEL.WEIGHTS '': evaluating a randomly initialised model" in proc.stderr
    assert (tmp_path / "inference" / "results.zip").is_file()
