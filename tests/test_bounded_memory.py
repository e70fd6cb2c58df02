"""Paper-exact inference with bounded memory: lazy frames and mask logits on disk."""

import pytest
import torch
from detectron2.modeling import build_model

from minvis import tracking
from minvis.modeling import VideoInputError
from minvis.tracking import FrameOutputs, track_video


def test_disk_tensors_round_trip_exactly():
    stored = tracking._DiskTensors()
    assert list(stored) == [] and len(stored) == 0
    tensors = [torch.randn(3, 5, 7) for _ in range(4)]
    for t in tensors[:2]:
        stored.append(t)
    assert [torch.equal(a, b) for a, b in zip(stored, tensors[:2], strict=True)] == [True, True]
    for t in tensors[2:]:  # appending after reading
        stored.append(t)
    assert len(stored) == 4
    assert all(torch.equal(a, b) for a, b in zip(stored, tensors, strict=True))
    # Two iterators at once (a result's masks read twice, interleaved) each see every tensor.
    first, second = iter(stored), iter(stored)
    pairs = [(next(first), next(second)) for _ in range(4)]
    assert all(torch.equal(a, t) and torch.equal(b, t) for (a, b), t in zip(pairs, tensors, strict=True))
    assert next(first, None) is None


def test_disk_tensors_keep_the_dtype():
    stored = tracking._DiskTensors()
    tensors = [torch.randint(-100, 100, (2, 3), dtype=torch.int16), torch.arange(6).view(2, 3).short()]
    for t in tensors:
        stored.append(t)
    got = list(stored)
    assert all(g.dtype == torch.int16 and torch.equal(g, t) for g, t in zip(got, tensors, strict=True))


def _parity_frames(parity_fixture) -> list[FrameOutputs]:
    raw = parity_fixture["raw"]
    fields = zip(raw["pred_logits"], raw["pred_masks"], raw["pred_embds"], strict=True)
    return [FrameOutputs(*frame, (96, 128), (96, 128)) for frame in fields]


def test_spilled_result_is_identical(parity_fixture, monkeypatch):
    appended = []

    class Spy(tracking._DiskTensors):
        def append(self, tensor):
            appended.append(tuple(tensor.shape))
            super().append(tensor)

    monkeypatch.setattr(tracking, "_DiskTensors", Spy)
    frames = _parity_frames(parity_fixture)
    in_memory = dict(track_video(frames, (120, 160), spill_to_disk=False))
    assert appended == []
    on_disk_result = track_video(frames, (120, 160), spill_to_disk=True)
    assert appended == [tuple(parity_fixture["raw"]["pred_masks"].shape[1:])] * len(frames)  # [Q, h, w] each
    on_disk = dict(on_disk_result)
    assert on_disk["pred_scores"] == in_memory["pred_scores"]
    assert on_disk["pred_labels"] == in_memory["pred_labels"]
    assert all(torch.equal(a, b) for a, b in zip(on_disk["pred_masks"], in_memory["pred_masks"], strict=True))
    # The masks can be read again, frame by frame, from the file.
    again = list(on_disk_result.frame_masks())
    assert len(again) == len(frames)
    for t, frame in enumerate(again):
        assert torch.equal(frame, torch.stack([m[t] for m in in_memory["pred_masks"]]))


@pytest.fixture(scope="module")
def model(parity_cfg, parity_fixture):
    model = build_model(parity_cfg).eval()
    model.load_state_dict(parity_fixture["state_dict"], strict=True)
    return model


def test_model_takes_frames_lazily(model, parity_fixture):
    frames = [f.float() for f in parity_fixture["input"]["frames"]]
    size = {"height": parity_fixture["input"]["height"], "width": parity_fixture["input"]["width"]}
    model.frames_per_forward = 3
    pulled, spill = [], model.spill_masks_to_disk

    def lazy():
        for frame in frames:
            pulled.append(len(pulled))
            yield frame

    try:
        with torch.no_grad():
            # Frame t's outputs come after at most its window of 3 frames was read.
            read_at = [len(pulled) for _ in model.frame_outputs(lazy())]
            assert read_at == [3, 3, 3, 6, 6, 6, 8, 8]
            reference = model([{"image": frames, **size}])
            pulled.clear()
            model.spill_masks_to_disk = not spill  # both ways give the same result
            streamed = model([{"image": lazy(), **size}])
    finally:
        model.spill_masks_to_disk, model.frames_per_forward = spill, 1
    assert pulled == list(range(len(frames)))
    assert streamed["pred_scores"] == reference["pred_scores"]
    assert streamed["pred_labels"] == reference["pred_labels"]
    assert all(
        torch.equal(a, b) for a, b in zip(streamed["pred_masks"], reference["pred_masks"], strict=True)
    )
    with pytest.raises(VideoInputError, match="no frames"):
        model([{"image": iter(()), **size}])
