"""A training run killed after a checkpoint and resumed ends where an uninterrupted run does.

The interrupted run SIGKILLs itself right after its checkpoint at iteration
``TINY_RUN_CHECKPOINT - 1`` (``tests/train_until_killed.py``); ``train_net.py --resume``
continues it to ``TINY_RUN_ITERS``. Compared with the uninterrupted run of the same
config (``tiny_run``): the iteration counter, the learning-rate schedule (scheduler state
and the logged lr) and the optimizer's step counts. Final weights are not compared: as in
detectron2 (and the official release), the training sampler starts its shuffled stream
again on resume, so the resumed run does not see the batches the uninterrupted run sees.
"""

import json
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_RUN, TINY_RUN_CHECKPOINT, TINY_RUN_ITERS, run_tiny

CHECKPOINT = f"model_{TINY_RUN_CHECKPOINT - 1:07d}.pth"  # the last one before the kill


def _logged(output_dir: Path, key: str) -> dict[int, float]:
    lines = (output_dir / "metrics.json").read_text().splitlines()
    return {m["iteration"]: m[key] for m in map(json.loads, lines) if key in m}


@pytest.fixture(scope="module")
def resumed_run(tiny_datasets, tmp_path_factory) -> Path:
    """OUTPUT_DIR of TINY_RUN killed after its first checkpoint, then resumed to the end."""
    output_dir = tmp_path_factory.mktemp("resumed_run")
    killed = run_tiny(
        REPO / "tests" / "train_until_killed.py", tiny_datasets,
        "--kill-after", TINY_RUN_CHECKPOINT - 1, *TINY_RUN, "OUTPUT_DIR", output_dir,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL: a real interruption
    assert (output_dir / "last_checkpoint").read_text() == CHECKPOINT
    assert not (output_dir / "model_final.pth").exists()
    resumed = run_tiny(REPO / "train_net.py", tiny_datasets, "--resume", *TINY_RUN, "OUTPUT_DIR", output_dir)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-5000:]
    assert f"Starting training from iteration {TINY_RUN_CHECKPOINT}" in resumed.stdout + resumed.stderr
    return output_dir


def test_resumed_run_continues_the_schedule(resumed_run, tiny_run):
    ours, reference = (torch.load(d / "model_final.pth", weights_only=True) for d in (resumed_run, tiny_run))
    assert ours["iteration"] == reference["iteration"] == TINY_RUN_ITERS - 1
    scheduler = ours["trainer"]["hooks"]["LRScheduler"]
    assert scheduler == reference["trainer"]["hooks"]["LRScheduler"]
    assert scheduler["last_epoch"] == TINY_RUN_ITERS  # went on from the checkpoint, not restarted
    last = TINY_RUN_ITERS - 1
    assert _logged(resumed_run, "lr")[last] == _logged(tiny_run, "lr")[last]
    steps = {float(s["step"]) for s in ours["trainer"]["_trainer"]["optimizer"]["state"].values()}
    assert steps == {TINY_RUN_ITERS}  # AdamW's state came back from the checkpoint
