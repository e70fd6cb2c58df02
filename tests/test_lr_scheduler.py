"""The LR scheduler is built as the official trainer builds it (detectron2's DeepLab
``build_lr_scheduler``): WarmupPolyLR works from config, the default is unchanged."""

import pytest
import torch
from conftest import CONFIGS
from detectron2.solver import build_lr_scheduler as detectron2_build_lr_scheduler

from minvis.config import build_config
from minvis.engine import Trainer

TINY_CONFIG = str(CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml")
BASE_LR, MAX_ITER = 0.5, 20


def lr_sequence(scheduler_of, cfg) -> list[float]:
    """The LR of each of the MAX_ITER iterations, as the trainer steps the scheduler."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = scheduler_of(cfg, optimizer)
    lrs = []
    for _ in range(MAX_ITER):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_poly_lr_from_config() -> None:
    cfg = build_config(TINY_CONFIG, [
        "SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR", "SOLVER.BASE_LR", BASE_LR, "SOLVER.MAX_ITER", MAX_ITER,
        "SOLVER.WARMUP_ITERS", 4, "SOLVER.WARMUP_FACTOR", 0.1, "SOLVER.WARMUP_METHOD", "linear",
        "SOLVER.POLY_LR_POWER", 0.9, "SOLVER.POLY_LR_CONSTANT_ENDING", 0.0,
    ])  # fmt: skip
    lrs = lr_sequence(Trainer.build_lr_scheduler, cfg)
    # Hand formula: base * warmup(t) * (1 - t / max_iter) ** power, linear warmup over 4 iterations.
    warmup = [0.1 * (1 - t / 4) + t / 4 if t < 4 else 1.0 for t in range(MAX_ITER)]
    expected = [BASE_LR * w * (1 - t / MAX_ITER) ** 0.9 for t, w in enumerate(warmup)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_default_multistep_schedule_is_unchanged() -> None:
    cfg = build_config(TINY_CONFIG, [
        "SOLVER.BASE_LR", BASE_LR, "SOLVER.MAX_ITER", MAX_ITER, "SOLVER.STEPS", (8, 15),
        "SOLVER.WARMUP_ITERS", 5, "SOLVER.GAMMA", 0.1,
    ])  # fmt: skip
    assert cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupMultiStepLR"
    lrs = lr_sequence(Trainer.build_lr_scheduler, cfg)
    assert lrs == lr_sequence(detectron2_build_lr_scheduler, cfg)  # what the trainer built before
    assert lrs[10] == pytest.approx(BASE_LR * 0.1) and lrs[-1] == pytest.approx(BASE_LR * 0.01)
