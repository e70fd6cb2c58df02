"""Checkpoints load completely, by their keys, and safely."""

import logging
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from minvis.modeling import CheckpointLoadError, MinVISCheckpointer


@pytest.fixture()
def fresh_model(parity_cfg):
    return build_model(parity_cfg).eval()


def _assert_loaded_exactly(model, state_dict):
    ours = model.state_dict()
    for key, value in state_dict.items():
        assert torch.equal(ours[key], torch.as_tensor(value)), key


def _load_and_capture(model, path, caplog, **kwargs):
    with caplog.at_level(logging.WARNING):
        MinVISCheckpointer(model, **kwargs).load(str(path))
    return caplog.text


def test_detectron2_pkl_loads_without_key_warnings(fresh_model, parity_fixture, tmp_path, caplog):
    weights = {k: v.numpy() for k, v in parity_fixture["state_dict"].items()}
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "test"}, f)
    log = _load_and_capture(fresh_model, path, caplog)
    assert "not found in" not in log and "were not used" not in log and "Skip loading" not in log
    _assert_loaded_exactly(fresh_model, weights)


@pytest.mark.parametrize("with_metadata", [True, False])
def test_pth_loads_completely_with_or_without_metadata(
    fresh_model, parity_fixture, tmp_path, caplog, with_metadata
):
    state_dict = parity_fixture["state_dict"]
    if not with_metadata:  # plain dict: the case the official version check gets wrong
        state_dict = dict(state_dict.items())
        assert not hasattr(state_dict, "_metadata")
    else:
        assert hasattr(state_dict, "_metadata")
    path = tmp_path / "model.pth"
    torch.save({"model": state_dict}, path)
    log = _load_and_capture(fresh_model, path, caplog)
    assert "not found in" not in log and "were not used" not in log
    _assert_loaded_exactly(fresh_model, state_dict)


def test_training_checkpoint_with_optimizer_and_scheduler_loads(fresh_model, parity_fixture, tmp_path):
    optimizer = torch.optim.AdamW(fresh_model.parameters(), lr=1e-4)
    fresh_model.train()
    fresh_model.zero_grad()
    sum(p.sum() for p in fresh_model.parameters()).backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[10])
    path = tmp_path / "model_0004999.pth"
    torch.save(
        {
            "model": parity_fixture["state_dict"],
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "iteration": 4999,
            "numpy_scalar": np.float64(0.5),
        },
        path,
    )
    model = fresh_model.eval()
    extra = MinVISCheckpointer(model).load(str(path))
    assert extra["iteration"] == 4999
    _assert_loaded_exactly(model, parity_fixture["state_dict"])


def test_legacy_head_keys_are_moved_under_pixel_decoder(fresh_model, parity_fixture, tmp_path):
    legacy = OrderedDict(
        (k.replace("sem_seg_head.pixel_decoder.", "sem_seg_head."), v)
        for k, v in parity_fixture["state_dict"].items()
    )
    path = tmp_path / "legacy.pth"
    torch.save({"model": legacy}, path)
    MinVISCheckpointer(fresh_model, strict=True).load(str(path))
    _assert_loaded_exactly(fresh_model, parity_fixture["state_dict"])


class _RunsACommand:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_crafted_pickle_is_refused_and_runs_nothing(fresh_model, tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    with open(path, "wb") as f:
        pickle.dump({"model": {}, "payload": _RunsACommand(str(marker))}, f)
    with pytest.raises(CheckpointLoadError, match=str(path)):
        MinVISCheckpointer(fresh_model).load(str(path))
    assert not marker.exists()


def test_missing_weights_file_is_an_error(fresh_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS"):
        MinVISCheckpointer(fresh_model).load(str(tmp_path / "nope.pth"))


def test_strict_load_names_the_mismatch(fresh_model, parity_fixture, tmp_path):
    state_dict = dict(parity_fixture["state_dict"].items())
    state_dict["sem_seg_head.predictor.class_embed.weight"] = torch.zeros(26, 32)
    state_dict["sem_seg_head.predictor.class_embed.bias"] = torch.zeros(26)
    path = tmp_path / "ovis_model.pth"
    torch.save({"model": state_dict}, path)
    with pytest.raises(CheckpointLoadError, match=r"ovis_model.pth.*class_embed"):
        MinVISCheckpointer(fresh_model, strict=True).load(str(path))
