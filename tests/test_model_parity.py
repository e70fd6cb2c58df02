"""The model reproduces the official MinVIS release on the recorded fixture."""

import pytest
import torch
from detectron2.modeling import build_model

from minvis.modeling.speedups import apply_speedups

RAW_TOLERANCE = 1e-4
SCORE_TOLERANCE = 1e-4
MIN_MASK_IOU = 0.999


@pytest.fixture(scope="module", params=["plain", "speedups"])
def model(request, parity_cfg, parity_fixture):
    """The model as built, and as the trainer and the predictor run it."""
    model = build_model(parity_cfg).eval()
    model.load_state_dict(parity_fixture["state_dict"], strict=True)
    return apply_speedups(model) if request.param == "speedups" else model


def _video_input(fixture) -> list[dict]:
    frames = fixture["input"]["frames"]  # uint8 [T, 3, H, W]
    return [
        {"image": [f.float() for f in frames], "height": fixture["input"]["height"],
         "width": fixture["input"]["width"]}
    ]


@pytest.mark.parametrize("window", [False, True])
def test_raw_per_frame_outputs_match_official(model, parity_fixture, window):
    model.frames_per_forward = 3 if window else 1  # 3 does not divide T = 8
    frames = [f.float() for f in parity_fixture["input"]["frames"]]
    with torch.no_grad():
        outputs = list(model.frame_outputs(frames))
    fields = {"pred_logits": "logits", "pred_masks": "masks", "pred_embds": "embds"}  # official keys
    for key, reference in parity_fixture["raw"].items():
        ours = torch.stack([getattr(frame, fields[key]) for frame in outputs])
        assert ours.shape == reference.shape
        assert (ours - reference).abs().max().item() < RAW_TOLERANCE, key


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


@pytest.mark.parametrize("window", [False, True])
def test_video_output_matches_official(model, parity_fixture, window):
    model.frames_per_forward = 3 if window else 1
    with torch.no_grad():
        ours = model(_video_input(parity_fixture))
    reference = parity_fixture["output"]
    assert ours["image_size"] == tuple(reference["image_size"])
    assert len(ours["pred_scores"]) == len(reference["pred_scores"]) == 10
    # The reference is in topk(sorted=False) order: pair instances by (label, score).
    unmatched = list(range(len(reference["pred_scores"])))
    for score, label, mask in zip(ours["pred_scores"], ours["pred_labels"], ours["pred_masks"]):
        j = min(
            (j for j in unmatched if reference["pred_labels"][j] == label),
            key=lambda j: abs(reference["pred_scores"][j] - score),
        )
        unmatched.remove(j)
        assert abs(reference["pred_scores"][j] - score) < SCORE_TOLERANCE
        assert mask.dtype == torch.bool and mask.shape == reference["pred_masks"][j].shape
        assert _mask_iou(mask, reference["pred_masks"][j]) >= MIN_MASK_IOU
    assert unmatched == []


def test_bad_videos_get_clear_errors(model):
    from minvis.modeling import VideoInputError

    with pytest.raises(VideoInputError, match="no frames"):
        model([{"image": [], "height": 10, "width": 10}])
    frames = [torch.zeros(3, 64, 64), torch.zeros(3, 64, 96)]
    with pytest.raises(VideoInputError, match="frame 1 has size"):
        model([{"image": frames, "height": 64, "width": 64}])
    with pytest.raises(VideoInputError, match="dtype"):
        model([{"image": [torch.zeros(3, 64, 64, dtype=torch.int32)]}])
    with pytest.raises(VideoInputError, match=r"\[3, H, W\]"):
        model([{"image": [torch.zeros(64, 64)]}])
