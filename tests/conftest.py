import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
CONFIGS = REPO / "configs"
PARITY_FIXTURE = FIXTURES / "parity_ytvis19_r50tiny_s0.pth"

os.environ.setdefault("DETECTRON2_DATASETS", str(REPO / "datasets"))


@pytest.fixture(scope="session")
def parity_fixture() -> dict:
    return torch.load(PARITY_FIXTURE, weights_only=True)


@pytest.fixture(scope="session")
def parity_cfg(parity_fixture):
    from minvis.config import build_config

    return build_config(
        str(CONFIGS / parity_fixture["base_config"]),
        [*parity_fixture["config_overrides"], "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""],
    )


TINY_CONFIG = CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml"
# A short deterministic single-process run of the tiny config (one torch thread, no
# data-loader workers): the resume test interrupts it, the demo test uses its weights.
TINY_RUN_ITERS, TINY_RUN_CHECKPOINT = 20, 10
TINY_RUN = [
    *["SOLVER.IMS_PER_BATCH", 4, "SOLVER.WARMUP_ITERS", 5, "SOLVER.STEPS", "(15,)", "SEED", 0],
    *["SOLVER.MAX_ITER", TINY_RUN_ITERS, "SOLVER.CHECKPOINT_PERIOD", TINY_RUN_CHECKPOINT],
    *["DATALOADER.NUM_WORKERS", 0, "NUM_THREADS", 1, "DETERMINISTIC", True],
]


def run_tiny(script: Path, datasets: Path, *args: object) -> subprocess.CompletedProcess:
    """``script --config-file TINY_CONFIG ARGS`` in a subprocess with one OpenMP thread."""
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(script), "--config-file", str(TINY_CONFIG), *map(str, args)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def synthetic_datasets(root: Path, num_train: int, num_val: int) -> Path:
    """``root`` as ``$DETECTRON2_DATASETS`` holding ``synthetic_ytvis`` (videos of 8 frames)."""
    from minvis.data.synthetic import SyntheticSpec, write_split

    spec = SyntheticSpec(num_frames=8)
    write_split(root / "synthetic_ytvis", "train", num_train, spec, seed=0)
    write_split(root / "synthetic_ytvis", "val", num_val, spec, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_datasets(tmp_path_factory) -> Path:
    """8 train and 2 val synthetic videos (see :func:`synthetic_datasets`)."""
    return synthetic_datasets(tmp_path_factory.mktemp("tiny_datasets"), 8, 2)


@pytest.fixture(scope="session")
def tiny_run(tiny_datasets, tmp_path_factory) -> Path:
    """OUTPUT_DIR of the uninterrupted TINY_RUN (``model_final.pth`` = its weights)."""
    output_dir = tmp_path_factory.mktemp("tiny_run")
    done = run_tiny(REPO / "train_net.py", tiny_datasets, *TINY_RUN, "OUTPUT_DIR", output_dir)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    return output_dir
