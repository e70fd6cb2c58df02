import os
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
