"""Same seed, same machine, same weights: ``train_net.py`` is bit-reproducible.

Two short runs of the tiny config (data-loader workers as configured) from one seed, in
shells with different ``OMP_NUM_THREADS`` (as a user following the README's advice for
a loaded machine would have): ``NUM_THREADS`` fixes torch's thread count, so the losses
and every weight agree bit for bit. Without it the float sums split differently and the
runs drift apart within a few iterations.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, REPO
from detectron2.config import CfgNode

from minvis.data.synthetic import SyntheticSpec, write_split
from minvis.engine.reproducibility import apply_reproducibility

TINY_CONFIG = CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml"
ITERS = 20
RUN_OPTS = [
    *["SEED", 0, "NUM_THREADS", 1, "DETERMINISTIC", True, "SOLVER.MAX_ITER", ITERS],
    *["SOLVER.IMS_PER_BATCH", 4, "SOLVER.WARMUP_ITERS", 5, "SOLVER.CHECKPOINT_PERIOD", 1000],
    *["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", 80, "DATASETS.TEST", "()"],
    *["MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 256],
]


def train(datasets: Path, output_dir: Path, omp_threads: int) -> None:
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets), "OMP_NUM_THREADS": str(omp_threads)}
    command = [sys.executable, "train_net.py", "--config-file", str(TINY_CONFIG)]
    command += [*map(str, RUN_OPTS), "OUTPUT_DIR", str(output_dir)]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]


def logged_losses(output_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith(("total_loss", "loss_"))} for r in records]


def test_two_runs_from_one_seed_are_bit_identical(tmp_path):
    datasets = tmp_path / "datasets"
    write_split(datasets / "synthetic_ytvis", "train", 8, SyntheticSpec(num_frames=4, height=64, width=80), 0)
    runs = [tmp_path / "omp1", tmp_path / "omp2"]
    for omp_threads, output_dir in enumerate(runs, start=1):
        train(datasets, output_dir, omp_threads)

    first, second = (logged_losses(run) for run in runs)
    assert first and first[-1]["total_loss"] > 0
    assert first == second
    weights = [torch.load(run / "model_final.pth", weights_only=True)["model"] for run in runs]
    assert weights[0].keys() == weights[1].keys()
    differing = [name for name in weights[0] if not torch.equal(weights[0][name], weights[1][name])]
    assert not differing, differing


@pytest.fixture
def torch_settings():
    saved = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.set_num_threads(saved[0])
    torch.use_deterministic_algorithms(saved[1], warn_only=warn_only)


def test_apply_reproducibility_sets_threads_and_deterministic_algorithms(torch_settings):
    threads = 1 if torch.get_num_threads() != 1 else 2
    apply_reproducibility(CfgNode({"NUM_THREADS": threads, "DETERMINISTIC": True, "SEED": 0}))
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()


def test_zero_threads_keeps_torch_default(torch_settings):
    before = torch.get_num_threads()
    apply_reproducibility(CfgNode({"NUM_THREADS": 0, "DETERMINISTIC": False, "SEED": -1}))
    assert torch.get_num_threads() == before
