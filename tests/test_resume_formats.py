"""``--resume`` from both checkpoint layouts, on detectron2 0.6 and on current upstream.

detectron2 0.6's trainer checkpoints ``{"iteration", "hooks"}``; upstream after 0.6 adds
``"_trainer"`` (the inner trainer's iteration and optimizer state) and its
``DefaultTrainer.load_state_dict`` reads that key unconditionally. Both detectron2s are
simulated here by giving ``DefaultTrainer`` the state methods each one has, so the
upstream behaviour is tested without building upstream. Training runs in this process
on a tiny synthetic dataset, a few iterations at a time.
"""

import shutil
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS
from detectron2.engine import DefaultTrainer, TrainerBase

from minvis.config import build_config
from minvis.data.builtin import register_synthetic_ytvis
from minvis.data.synthetic import SyntheticSpec, write_split
from minvis.engine import Trainer

TINY_CONFIG = CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml"
DATASET_PREFIX = "resume_formats_ytvis"
TRAINED_ITERS, RESUMED_ITERS = 3, 5


def upstream_state_dict(self: DefaultTrainer) -> dict:
    """Upstream's ``DefaultTrainer.state_dict`` (detectron2 main, 2026-06)."""
    return {**TrainerBase.state_dict(self), "_trainer": self._trainer.state_dict()}


def upstream_load_state_dict(self: DefaultTrainer, state_dict: dict) -> None:
    """Upstream's ``DefaultTrainer.load_state_dict``: ``"_trainer"`` is required."""
    TrainerBase.load_state_dict(self, state_dict)
    self._trainer.load_state_dict(state_dict["_trainer"])


FLAVOURS = {
    "0.6": (TrainerBase.state_dict, TrainerBase.load_state_dict),
    "upstream": (upstream_state_dict, upstream_load_state_dict),
}


@pytest.fixture(params=sorted(FLAVOURS))
def detectron2_flavour(request, monkeypatch) -> str:
    state_dict, load_state_dict = FLAVOURS[request.param]
    monkeypatch.setattr(DefaultTrainer, "state_dict", state_dict)
    monkeypatch.setattr(DefaultTrainer, "load_state_dict", load_state_dict)
    return request.param


@pytest.fixture(scope="module")
def train_dataset(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("datasets") / "synthetic"
    write_split(root, "train", 4, SyntheticSpec(num_frames=4, height=64, width=80), seed=0)
    (name,) = register_synthetic_ytvis(str(root), prefix=DATASET_PREFIX, splits=("train",))
    return name


def build_trainer(dataset: str, output_dir: Path, max_iter: int) -> Trainer:
    cfg = build_config(
        str(TINY_CONFIG),
        [
            *["DATASETS.TRAIN", f"('{dataset}',)", "DATASETS.TEST", "()"],
            *["SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "(4,)"],
            *["SOLVER.MAX_ITER", str(max_iter), "SOLVER.CHECKPOINT_PERIOD", "1000"],
            *["DATALOADER.NUM_WORKERS", "0", "SEED", "0", "OUTPUT_DIR", str(output_dir)],
            *["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "80"],
            *["MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256"],
        ],
    )
    return Trainer(cfg)


def optimizer_steps(optimizer_state: dict) -> set[int]:
    return {int(state["step"]) for state in optimizer_state["state"].values()}


@pytest.fixture(scope="module")
def trained_dir(train_dataset, tmp_path_factory) -> Path:
    """OUTPUT_DIR after TRAINED_ITERS iterations (written by the installed detectron2)."""
    output_dir = tmp_path_factory.mktemp("trained")
    trainer = build_trainer(train_dataset, output_dir, TRAINED_ITERS)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return output_dir


def checkpoint_in_layout(trained_dir: Path, layout: str, output_dir: Path) -> dict:
    """Copy the trained checkpoint into ``output_dir``, as detectron2 0.6 or upstream would write it."""
    checkpoint = torch.load(trained_dir / "model_final.pth", weights_only=True)
    if layout == "0.6":
        del checkpoint["trainer"]["_trainer"]
    output_dir.mkdir()
    torch.save(checkpoint, output_dir / "model_final.pth")
    shutil.copy(trained_dir / "last_checkpoint", output_dir / "last_checkpoint")
    return checkpoint


@pytest.mark.parametrize("layout", ["0.6", "upstream"])
def test_resume_from_either_layout(detectron2_flavour, layout, train_dataset, trained_dir, tmp_path):
    output_dir = tmp_path / "resumed"
    checkpoint = checkpoint_in_layout(trained_dir, layout, output_dir)
    trainer = build_trainer(train_dataset, output_dir, RESUMED_ITERS)
    trainer.resume_or_load(resume=True)

    assert trainer.start_iter == TRAINED_ITERS
    assert trainer.scheduler.last_epoch == TRAINED_ITERS  # the LRScheduler hook's state
    restored = trainer.optimizer.state_dict()
    if layout == "upstream":
        saved = checkpoint["trainer"]["_trainer"]["optimizer"]
        assert restored["state"].keys() == saved["state"].keys()
        for key, state in saved["state"].items():
            for name, value in state.items():
                assert torch.equal(restored["state"][key][name], value), (key, name)
    else:  # detectron2 0.6 kept no optimizer state: AdamW starts afresh
        assert restored["state"] == {}

    trainer.train()
    resumed = torch.load(output_dir / "model_final.pth", weights_only=True)
    assert resumed["iteration"] == RESUMED_ITERS - 1
    # Written in the upstream layout (resumed above on both): AdamW counted every step it took.
    state = resumed["trainer"]
    assert state["iteration"] == state["_trainer"]["iteration"] == RESUMED_ITERS - 1
    assert "LRScheduler" in state["hooks"]
    steps = RESUMED_ITERS if layout == "upstream" else RESUMED_ITERS - TRAINED_ITERS
    assert optimizer_steps(resumed["trainer"]["_trainer"]["optimizer"]) == {steps}
