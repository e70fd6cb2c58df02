"""The initial weights report of ``train_net.py`` (issue 22): at training start one line says
how many tensors of each top-level module came from MODEL.WEIGHTS, and a backbone that got none
stops the run unless ``--allow-random-backbone``. Checked on backbone files in the two converted
layouts detectron2 projects start from: torchvision's ResNet after detectron2's
``convert-torchvision-to-d2.py`` and Swin after Mask2Former's ``convert-pretrained-swin-model-to-d2.py``
(backbone keys without the ``backbone.`` prefix, ``matching_heuristics``), with numpy arrays.
"""

import importlib.util
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_CONFIG
from detectron2.modeling import build_model

from minvis.config import build_config
from minvis.data.synthetic import SyntheticSpec, write_split
from minvis.modeling import CheckpointLoadError, MinVISCheckpointer

spec = importlib.util.spec_from_file_location("train_net", REPO / "train_net.py")
train_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_net)

TINY_SWIN = [
    *["MODEL.BACKBONE.NAME", "D2SwinTransformer", "MODEL.SWIN.EMBED_DIM", "24"],
    *[
        "MODEL.SWIN.DEPTHS",
        "[1, 1, 1, 1]",
        "MODEL.SWIN.NUM_HEADS",
        "[1, 2, 4, 8]",
        "MODEL.SWIN.WINDOW_SIZE",
        "4",
    ],
]


def converted_backbone(model: torch.nn.Module, path: Path, author: str, extra: dict[str, np.ndarray]) -> dict:
    """Write ``path``: random values for every backbone tensor under its name without the
    ``backbone.`` prefix, as the convert scripts write them, plus ``extra`` keys of the source
    model (its classifier); returns the backbone's arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        name: rng.standard_normal(tensor.shape).astype(np.float32)
        if tensor.is_floating_point()
        else np.array(tensor.numpy() + 1)
        for name, tensor in model.backbone.state_dict().items()
    }
    with open(path, "wb") as f:
        pickle.dump({"model": {**arrays, **extra}, "__author__": author, "matching_heuristics": True}, f)
    return arrays


def load_at_training_start(model, path: Path, caplog, allow_random_backbone: bool = False) -> str:
    """Load ``path`` as the trainer does (not strict), inside the report; return the report."""
    checkpointer = MinVISCheckpointer(model)
    with caplog.at_level(logging.INFO, logger="minvis"):
        with train_net.checked_initial_weights(model, str(path), allow_random_backbone):
            checkpointer.resume_or_load(str(path), resume=False)
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Initial weights")][-1]


@pytest.mark.parametrize(
    ("opts", "author", "extra"),
    [
        ([], "torchvision", {"stem.fc.weight": np.zeros((1000, 2048), np.float32)}),
        (TINY_SWIN, "third_party", {"head.weight": np.zeros((1000, 192), np.float32)}),
    ],
    ids=["resnet-torchvision-converted", "swin-mask2former-converted"],
)
def test_every_backbone_tensor_comes_from_the_converted_file(tmp_path, caplog, opts, author, extra):
    model = build_model(build_config(str(TINY_CONFIG), opts))
    path = tmp_path / "backbone.pkl"
    arrays = converted_backbone(model, path, author, extra)
    report = load_at_training_start(model, path, caplog)
    backbone = model.backbone.state_dict()
    assert f"from {path}: backbone {len(backbone)}/{len(backbone)}, sem_seg_head 0/" in report
    for name, value in arrays.items():
        assert torch.equal(backbone[name], torch.from_numpy(value)), name


def test_a_backbone_that_gets_nothing_stops_training_unless_allowed(tmp_path, caplog):
    model = build_model(build_config(str(TINY_CONFIG)))
    path = tmp_path / "resnet50.pkl"
    # torchvision's own names, not converted: no key names a tensor of this model.
    with open(path, "wb") as f:
        pickle.dump({"model": {"layer1.0.conv1.weight": np.zeros((16, 64, 1, 1), np.float32)}}, f)
    with pytest.raises(
        CheckpointLoadError, match=r"none of the backbone's 318 tensors.*--allow-random-backbone"
    ):
        load_at_training_start(model, path, caplog)
    assert "backbone 0/318" in load_at_training_start(model, path, caplog, allow_random_backbone=True)

    datasets = tmp_path / "datasets"
    write_split(datasets / "synthetic_ytvis", "train", 2, SyntheticSpec(num_frames=2), seed=0)
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "train_net.py", "--config-file", str(TINY_CONFIG), "MODEL.WEIGHTS", str(path)]
    command += ["OUTPUT_DIR", str(tmp_path / "out"), "DATALOADER.NUM_WORKERS", "0"]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1].startswith(f"train_net.py: error: {path}: none of the backbone's")
