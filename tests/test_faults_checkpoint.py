"""Faults against training's outputs (issue 22): a checkpoint save on a full disk leaves no
truncated ``.pth`` and ``last_checkpoint`` as it was; a second run into an OUTPUT_DIR is refused."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_faults_output_paths import hold_in_subprocess, names, run_python
from torch import nn

from minvis.config import build_config
from minvis.engine import Trainer
from minvis.modeling import MinVISCheckpointer
from minvis.output_paths import OutputLockedError

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"

SAVE_ON_A_FULL_DISK = """
import resource, signal, sys
from torch import nn
from minvis.modeling import MinVISCheckpointer

checkpointer = MinVISCheckpointer(nn.Linear(128, 128), sys.argv[1])  # 64 KiB of weights
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))
for name in ("model_0000019", "model_final"):
    try:
        checkpointer.save(name, iteration=19)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
"""


def test_a_save_on_a_full_disk_leaves_no_partial_checkpoint(tmp_path):
    checkpointer = MinVISCheckpointer(nn.Linear(128, 128), str(tmp_path))
    checkpointer.save("model_final", iteration=9)
    checkpointer.save("model_0000009", iteration=9)
    before = {name: (tmp_path / name).read_bytes() for name in names(tmp_path)}
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"

    done = run_python(["-c", textwrap.dedent(SAVE_ON_A_FULL_DISK), tmp_path])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: cannot write {tmp_path / 'model_0000019.pth'}: File too large",
        f"error: cannot write {tmp_path / 'model_final.pth'}: File too large",
    ]
    assert {name: (tmp_path / name).read_bytes() for name in names(tmp_path)} == before
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 9


SAVE_A_LARGE_CHECKPOINT = """
import sys
from torch import nn
from minvis.modeling import MinVISCheckpointer

MinVISCheckpointer(nn.Linear(4096, 4096), sys.argv[1]).save("model_0000019")  # 64 MiB
"""


def test_a_save_killed_mid_write_leaves_no_checkpoint_under_its_name(tmp_path):
    checkpointer = MinVISCheckpointer(nn.Linear(128, 128), str(tmp_path))
    checkpointer.save("model_0000009", iteration=9)
    before = {name: (tmp_path / name).read_bytes() for name in names(tmp_path)}
    saving = subprocess.Popen([sys.executable, "-c", SAVE_A_LARGE_CHECKPOINT, str(tmp_path)], cwd=REPO)
    deadline = time.monotonic() + 120
    while len(names(tmp_path)) == len(before) and saving.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    saving.kill()
    assert saving.wait() == -9, "the save ended before it could be killed"
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert not (tmp_path / "model_0000019.pth").exists()


def test_a_second_training_or_evaluation_into_an_output_dir_is_refused(tmp_path):
    cfg = build_config(str(TINY_CONFIG), ["OUTPUT_DIR", str(tmp_path)])
    holder = hold_in_subprocess(tmp_path)
    try:
        message = f"{tmp_path} is in use by another run \\(pid {holder.pid}\\)"
        with pytest.raises(OutputLockedError, match=message):
            Trainer(cfg)
        with pytest.raises(OutputLockedError, match=message):
            Trainer.test(cfg, nn.Identity())
    finally:
        holder.kill()
        holder.wait()
