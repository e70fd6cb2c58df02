"""Paper-exact inference with bounded memory: lazy frames and mask logits on disk."""

import pytest
import torch
from detectron2.modeling import build_model

from minvis.inference import FrameOutputs, MaskGeometry, VideoResultAccumulator
from minvis.inference.disk_tensors import DiskTensorList
from minvis.modeling import VideoInputError


def test_disk_tensor_list_round_trips_exactly():
    stored = DiskTensorList()
    tensors = [torch.randn(3, 5, 7) for _ in range(4)]
    for t in tensors[:2]:
        stored.append(t)
    assert [torch.equal(a, b) for a, b in zip(stored, tensors[:2])] == [True, True]
    for t in tensors[2:]:  # appending after reading
        stored.append(t)
    assert len(stored) == 4
    assert all(torch.equal(a, b) for a, b in zip(stored, tensors, strict=True))
    with pytest.raises(ValueError, match=r"shape \(3, 5, 7\)"):
        stored.append(torch.zeros(3, 5, 8))
    stored.close()
    assert list(DiskTensorList()) == []


def test_spilled_accumulator_gives_identical_results(parity_fixture):
    raw = parity_fixture["raw"]
    sizes = {"image_size": (96, 128), "padded_size": (96, 128), "output_size": (120, 160)}
    results = []
    for spill in (False, True):
        accumulator = VideoResultAccumulator(MaskGeometry(**sizes), spill_to_disk=spill)
        for frame in zip(raw["pred_logits"], raw["pred_masks"], raw["pred_embds"]):
            accumulator.add_frame(FrameOutputs(*frame))
        results.append(accumulator.finalize().to_dict())
    in_memory, on_disk = results
    assert on_disk["pred_scores"] == in_memory["pred_scores"]
    assert on_disk["pred_labels"] == in_memory["pred_labels"]
    assert all(
        torch.equal(a, b) for a, b in zip(on_disk["pred_masks"], in_memory["pred_masks"], strict=True)
    )


@pytest.fixture(scope="module")
def model(parity_cfg, parity_fixture):
    model = build_model(parity_cfg).eval()
    model.load_state_dict(parity_fixture["state_dict"], strict=True)
    return model


def test_model_takes_frames_lazily(model, parity_fixture):
    frames = [f.float() for f in parity_fixture["input"]["frames"]]
    size = {"height": parity_fixture["input"]["height"], "width": parity_fixture["input"]["width"]}
    model.window_inference, model.window_size = True, 3
    with torch.no_grad():
        reference = model([{"image": frames, **size}])
        pulled = []

        def lazy():
            for frame in frames:
                pulled.append(len(pulled))
                yield frame

        model.spill_masks_to_disk = True
        try:
            streamed = model([{"image": lazy(), **size}])
        finally:
            model.spill_masks_to_disk = False
    assert pulled == list(range(len(frames)))
    assert streamed["pred_scores"] == reference["pred_scores"]
    assert streamed["pred_labels"] == reference["pred_labels"]
    assert all(
        torch.equal(a, b) for a, b in zip(streamed["pred_masks"], reference["pred_masks"], strict=True)
    )
    with pytest.raises(VideoInputError, match="no frames"):
        model([{"image": iter(()), **size}])
