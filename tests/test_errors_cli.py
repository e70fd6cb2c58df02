"""train_net.py: every bad argument, config file or config value is one line naming the file or
key and the problem, exit code 2, before anything is built (issue 22).

``train_net.cli`` runs in this process (each case takes milliseconds); one case also runs as a
real process. Errors of CPU worker processes reach the parent as themselves.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY_CONFIG

from minvis.data.video_io import VideoReadError
from minvis.engine import launch

spec = importlib.util.spec_from_file_location("train_net", REPO / "train_net.py")
train_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_net)


def error_line(capsys, returncode: int) -> str:
    """The one error line of a failed ``train_net.cli`` call."""
    err = capsys.readouterr().err
    assert returncode == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("train_net.py: error: ")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("configs")
    (folder / "typo.yaml").write_text(f"_BASE_: {TINY_CONFIG}\nMODEL:\n  WEIGTHS: ''\n")
    (folder / "bad.yaml").write_text("MODEL:\n  DEVICE: [cpu\n")
    (folder / "type.yaml").write_text(f"_BASE_: {TINY_CONFIG}\nSOLVER:\n  IMS_PER_BATCH: eight\n")
    return folder


TINY = ["--config-file", str(TINY_CONFIG)]
# (arguments before OUTPUT_DIR, config overrides after it, the expected error)
CASES = {
    "typo-in-file": (
        ["--config-file", "{configs}/typo.yaml"],
        [],
        "typo.yaml: unknown config key MODEL.WEIGTHS",
    ),
    "typo-in-opts": (TINY, ["MODEL.WEIGTHS", "x"], "command line: unknown config key MODEL.WEIGTHS"),
    "bad-yaml": (["--config-file", "{configs}/bad.yaml"], [], "bad.yaml: line 3, column 1: invalid YAML"),
    "type-in-file": (["--config-file", "{configs}/type.yaml"], [], "type.yaml: Type mismatch"),
    "type-in-opts": (TINY, ["SOLVER.IMS_PER_BATCH", "eight"], "command line: Type mismatch"),
    "missing-config": (["--config-file", "{configs}/nothing.yaml"], [], "nothing.yaml does not exist"),
    "folder-config": (["--config-file", "{configs}"], [], "is a folder, not a YAML file"),
    "odd-opts": (TINY, ["SOLVER.MAX_ITER"], "KEY VALUE pairs; SOLVER.MAX_ITER has no value"),
    "flag-after-opts": (TINY, ["SEED", "1", "--resume"], "--resume comes after the KEY VALUE overrides"),
    "device": (TINY, ["MODEL.DEVICE", "gpu"], "MODEL.DEVICE 'gpu' is not a device"),
    "batch-0": (TINY, ["SOLVER.IMS_PER_BATCH", "0"], "SOLVER.IMS_PER_BATCH must be at least 1, got 0"),
    "max-iter-0": (TINY, ["SOLVER.MAX_ITER", "0"], "SOLVER.MAX_ITER must be at least 1, got 0"),
    "max-iter-negative": (TINY, ["SOLVER.MAX_ITER", "-5"], "SOLVER.MAX_ITER must be at least 1, got -5"),
    "batch-per-process": (
        ["--num-gpus", "3", *TINY],
        ["SOLVER.IMS_PER_BATCH", "8"],
        "SOLVER.IMS_PER_BATCH 8 is not divisible by the 3 training processes",
    ),
    "matching": (TINY, ["MODEL.MINVIS.MATCHING", "cosine"], "MODEL.MINVIS.MATCHING 'cosine' is not one of"),
    "num-gpus-0": (["--num-gpus", "0", *TINY], [], "--num-gpus must be at least 1, got 0"),
    "num-gpus-negative": (["--num-gpus", "-1", *TINY], [], "--num-gpus must be at least 1, got -1"),
}


@pytest.mark.parametrize(("before", "opts", "expected"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_and_exit_2(configs, tmp_path, capsys, before, opts, expected):
    output_dir = tmp_path / "out"
    argv = [word.format(configs=configs) for word in before] + ["OUTPUT_DIR", str(output_dir), *opts]
    assert expected in error_line(capsys, train_net.cli(argv))
    assert not output_dir.exists()  # nothing was set up


def test_a_real_process_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "train_net.py", *TINY, "MODEL.DEVICE", "gpu", "OUTPUT_DIR", str(tmp_path)]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1] == (
        "train_net.py: error: MODEL.DEVICE 'gpu' is not a device; use cpu, cuda, cuda:N or mps"
    )


def fail_on_rank_1(path: str) -> None:
    from detectron2.utils import comm

    if comm.get_rank() == 1:
        raise VideoReadError(f"cannot read image {path}: image file is truncated")


def test_an_error_in_a_cpu_worker_process_reaches_the_parent_as_itself():
    with pytest.raises(VideoReadError, match=r"^cannot read image f.jpg: image file is truncated$"):
        launch(fail_on_rank_1, 2, dist_url="auto", args=("f.jpg",), use_cuda=False)
