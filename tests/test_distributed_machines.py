"""Two machines on this host (``--num-machines 2``, one gloo process each) against one machine with
two processes (``--num-gpus 2``): the same weights after training, the same ``--eval-only`` results.

The global ranks, their data and seeds are the same in both layouts, and a sum of two gradients
is the same in either order, so the weights are compared exactly.
"""

import json
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_RUN, run_tiny
from detectron2.engine.launch import _find_free_port
from machines import NUM_MACHINES, start_machine, stderr_of

TRAIN_ITERS = 3
SHORT_RUN = [*TINY_RUN, "SOLVER.MAX_ITER", TRAIN_ITERS, "SOLVER.CHECKPOINT_PERIOD", 1000]
NO_EVALUATION = ["DATASETS.TEST", "()"]  # the evaluation that ends training: compared with --eval-only
RUN_TIMEOUT_S = 600


def one_machine(datasets: Path, output_dir: Path, *args: object) -> None:
    """As many processes as ``two_machines``, on one machine."""
    layout = ["--num-gpus", NUM_MACHINES, "--dist-url", "auto"]
    done = run_tiny(REPO / "train_net.py", datasets, *layout, *args, "OUTPUT_DIR", output_dir)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]


def two_machines(datasets: Path, output_dir: Path, *args: object) -> None:
    port = _find_free_port()
    machines = [start_machine(rank, port, datasets, output_dir, *args) for rank in range(NUM_MACHINES)]
    for rank, machine in enumerate(machines):
        try:
            machine.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            machine.kill()
            machine.wait()
        assert machine.returncode == 0, stderr_of(output_dir, rank)[-5000:]


@pytest.fixture(scope="module")
def trained(tiny_datasets, tmp_path_factory) -> dict[str, Path]:
    """OUTPUT_DIR of the same short training in each layout."""
    folders = {layout: tmp_path_factory.mktemp(f"train_{layout}") for layout in ("one", "two")}
    one_machine(tiny_datasets, folders["one"], *SHORT_RUN, *NO_EVALUATION)
    two_machines(tiny_datasets, folders["two"], *SHORT_RUN, *NO_EVALUATION)
    return folders


def test_two_machines_train_the_weights_of_one_machine(trained):
    one, two = (
        torch.load(trained[layout] / "model_final.pth", weights_only=True) for layout in ("one", "two")
    )
    assert one["iteration"] == two["iteration"] == TRAIN_ITERS - 1
    assert one["model"].keys() == two["model"].keys()
    differing = [name for name in one["model"] if not torch.equal(one["model"][name], two["model"][name])]
    assert not differing, differing
    # Machine 1's process took part: rank 1 logged into the shared OUTPUT_DIR.
    assert (trained["two"] / "log.txt.rank1").is_file()


def test_two_machines_evaluate_as_one_machine(trained, tiny_datasets, tmp_path):
    # One thread per process in both layouts (another thread count sums in another order); no
    # data-loader processes (they take longer to start than the two videos take to infer).
    weights = ["--eval-only", "NUM_THREADS", 1, "DATALOADER.NUM_WORKERS", 0]
    weights += ["MODEL.WEIGHTS", trained["one"] / "model_final.pth"]
    one_machine(tiny_datasets, tmp_path / "one", *weights)
    two_machines(tiny_datasets, tmp_path / "two", *weights)
    one, two = tmp_path / "one" / "inference", tmp_path / "two" / "inference"
    entries = json.loads((one / "results.json").read_text())
    assert {entry["video_id"] for entry in entries} == {1, 2}
    assert "on 2 devices" in (tmp_path / "two" / "machine0.out").read_text()  # both processes inferred
    assert (one / "results.json").read_bytes() == (two / "results.json").read_bytes()
    assert json.loads((one / "metrics.json").read_text()) == json.loads((two / "metrics.json").read_text())
