"""Video-level results: parity with the official release, streaming, and errors."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import frame_outputs, match_embeddings, paper_exact_video_results
from pycocotools import mask as mask_util

from minvis.tracking import FrameOutputs, output_masks, select_top_k, track_stream, track_video

FIXTURE = (
    Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "parity_ytvis19_r50tiny_s0.pth"
)
SIZES = {"image_size": (96, 128), "padded_size": (96, 128), "output_size": (120, 160)}
OUTPUT_SIZE = SIZES["output_size"]


@pytest.fixture(scope="module")
def parity() -> dict[str, Any]:
    return torch.load(FIXTURE, weights_only=True)


def raw_frames(parity: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    raw = parity["raw"]
    return raw["pred_logits"], raw["pred_masks"], raw["pred_embds"]  # [T,Q,K+1], [T,Q,h,w], [T,Q,C]


def parity_frames(parity: dict[str, Any]) -> list[FrameOutputs]:
    sizes = SIZES["image_size"], SIZES["padded_size"]
    return [frame_outputs(*frame, *sizes) for frame in zip(*raw_frames(parity), strict=True)]


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def assert_matches_reference(result: dict[str, Any], reference: dict[str, Any]) -> None:
    """Pair instances by (label, score): the reference is in topk(sorted=False) order."""
    assert result["image_size"] == reference["image_size"]
    assert all(isinstance(s, float) for s in result["pred_scores"])
    assert all(isinstance(label, int) for label in result["pred_labels"])
    assert len(result["pred_scores"]) == len(reference["pred_scores"])
    unused = set(range(len(result["pred_scores"])))
    for ref_score, ref_label, ref_mask in zip(
        reference["pred_scores"], reference["pred_labels"], reference["pred_masks"], strict=True
    ):
        same_label = [j for j in unused if result["pred_labels"][j] == ref_label]
        i = min(same_label, key=lambda j: abs(result["pred_scores"][j] - ref_score))
        unused.remove(i)
        assert abs(result["pred_scores"][i] - ref_score) < 1e-4
        mask = result["pred_masks"][i]
        assert mask.dtype == torch.bool and mask.shape == ref_mask.shape
        assert iou(mask, ref_mask) >= 0.999


def test_paper_exact_matches_official(parity: dict[str, Any]) -> None:
    result = paper_exact_video_results(*raw_frames(parity), **SIZES, top_k=10)
    assert_matches_reference(result, parity["output"])


def test_spilled_to_disk_equals_in_memory(parity: dict[str, Any]) -> None:
    frames = parity_frames(parity)
    result = dict(track_video(frames, OUTPUT_SIZE, top_k=10, spill_to_disk=True))
    assert_matches_reference(result, parity["output"])
    exact = dict(track_video(frames, OUTPUT_SIZE, top_k=10))
    assert result["pred_scores"] == exact["pred_scores"]
    assert result["pred_labels"] == exact["pred_labels"]
    assert all(
        torch.equal(a, b) for a, b in zip(result["pred_masks"], exact["pred_masks"], strict=True)
    )


def encode_rle(frame_masks: torch.Tensor) -> list[dict[str, Any]]:
    """``[k, H, W]`` bool -> k compressed RLE dicts."""
    stacked = np.asfortranarray(frame_masks.permute(1, 2, 0).numpy().astype(np.uint8))
    return mask_util.encode(stacked)


def test_result_streams_encoded_frames(parity: dict[str, Any]) -> None:
    result = track_video(parity_frames(parity), OUTPUT_SIZE, top_k=10, spill_to_disk=True)
    per_frame = [encode_rle(frame) for frame in result.frame_masks()]  # T x k RLE
    encoded = [list(instance) for instance in zip(*per_frame)]  # k x T RLE
    assert result.scores == result["pred_scores"]
    assert result.labels == result["pred_labels"]
    assert len(result) == 4 and set(result) == {"image_size", "pred_scores", "pred_labels", "pred_masks"}
    for rles, mask in zip(encoded, result["pred_masks"], strict=True):
        assert len(rles) == result.num_frames
        decoded = torch.from_numpy(mask_util.decode(rles)).permute(2, 0, 1).bool()
        assert torch.equal(decoded, mask)


def test_top_k_zero_and_cap(parity: dict[str, Any]) -> None:
    logits, masks, embds = raw_frames(parity)
    empty = paper_exact_video_results(logits, masks, embds, **SIZES, top_k=0)
    assert empty == {
        "image_size": (120, 160),
        "pred_scores": [],
        "pred_labels": [],
        "pred_masks": [],
    }
    q, k = logits.shape[1], logits.shape[2] - 1
    everything = paper_exact_video_results(logits[:2], masks[:2], embds[:2], **SIZES, top_k=10**6)
    assert len(everything["pred_scores"]) == q * k
    three = paper_exact_video_results(logits, masks, embds, **SIZES, top_k=3)
    assert sorted(three["pred_scores"]) == pytest.approx(
        sorted(parity["output"]["pred_scores"])[-3:]
    )


def test_select_top_k_labels_and_tracks() -> None:
    probabilities = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.0, 0.4]])  # [Q=2, K=3]
    _, labels, tracks = select_top_k(probabilities, 2)
    pairs = sorted(zip(tracks.tolist(), labels.tolist(), strict=True))
    assert pairs == [(1, 0), (1, 2)]
    with pytest.raises(ValueError, match="top_k"):
        select_top_k(probabilities, -1)
    with pytest.raises(ValueError, match="top_k"):  # before any frame is consumed
        track_video(iter([]), (4, 4), top_k=-1)


def test_output_masks_crop_padding_before_resizing() -> None:
    logits = torch.full((1, 2, 4), -10.0)  # [N, h, w]: mask logits for a 8x16 padded input
    logits[:, :, 2:] = 1.0  # positive only over the padding (right half)
    empty = torch.zeros(1, 2)
    cropped = FrameOutputs(empty, logits, empty, image_size=(8, 8), padded_size=(8, 16))
    assert not output_masks(logits, cropped, (4, 4)).any()
    uncropped = FrameOutputs(empty, logits, empty, image_size=(8, 16), padded_size=(8, 16))
    assert output_masks(logits, uncropped, (4, 4)).any()
    assert output_masks(logits[:0], cropped, (4, 4)).shape == (0, 4, 4)


def test_streaming_uses_the_same_tracks(parity: dict[str, Any]) -> None:
    frames = parity_frames(parity)
    streamed = list(track_stream(frames, OUTPUT_SIZE, score_threshold=0.0))
    aligned = frames[0].embds  # the tracks' embeddings, in track order
    for t, (frame, instances) in enumerate(zip(frames, streamed, strict=True)):
        assert instances.frame_index == t
        perm = match_embeddings(aligned, frame.embds) if t else torch.arange(len(aligned))
        aligned = frame.embds[perm]
        # Every reported track's mask is non-empty and is its aligned query's mask.
        assert all(m.any() for m in instances.masks)
        expected = output_masks(frame.masks[perm[instances.track_ids]], frame, OUTPUT_SIZE)
        assert torch.equal(instances.masks, expected)
    # On the last frame the running mean is the whole-video mean: the paper's best
    # (track, class) pair shows up with the same label and score.
    reference = parity["output"]
    best = max(range(len(reference["pred_scores"])), key=reference["pred_scores"].__getitem__)
    close = (instances.scores - reference["pred_scores"][best]).abs() < 1e-4
    assert instances.labels[close].tolist() == [reference["pred_labels"][best]]


def synthetic_video() -> list[FrameOutputs]:
    """4 frames, 3 queries (slots A, B, C), K = 2, query order shuffled per frame.

    A (class 0) is visible on frames 0, 1, 3 and empty on frame 2; B is background
    (no-object); C (class 1) is born on frame 1.
    """
    embeddings = torch.eye(3)  # [3 tracks, C=3]
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 5.0, 0.0]])  # [3, K+1]
    visible = torch.tensor([[1, 0, 0], [1, 0, 1], [0, 0, 1], [1, 0, 1]], dtype=torch.bool)
    orders = [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]]  # frame slot j holds track order[j]
    frames = []
    for t, order in enumerate(orders):
        mask_logits = torch.where(visible[t], 3.0, -3.0)[:, None, None].expand(3, 2, 2)
        frames.append(frame_outputs(logits[order], mask_logits[order], embeddings[order], (8, 8), (8, 8)))
    return frames


def test_streaming_reports_births_and_deaths_with_stable_ids() -> None:
    reported = list(track_stream(synthetic_video(), (4, 4), score_threshold=0.5))
    assert [r.track_ids.tolist() for r in reported] == [[0], [0, 2], [2], [0, 2]]
    assert [r.labels.tolist() for r in reported] == [[0], [0, 1], [1], [0, 1]]
    assert all((r.scores >= 0.5).all() and r.masks.shape[1:] == (4, 4) for r in reported)
    silent = track_stream(synthetic_video(), (4, 4), score_threshold=1.01)
    assert all(len(instances.track_ids) == 0 for instances in silent)


def test_synthetic_video_result_follows_tracks() -> None:
    result = track_video(synthetic_video(), (4, 4), top_k=2)
    by_label = dict(zip(result["pred_labels"], result["pred_masks"], strict=True))
    assert by_label[0].flatten(1).any(dim=1).tolist() == [True, True, False, True]
    assert by_label[1].flatten(1).any(dim=1).tolist() == [False, True, True, True]
    instances = list(result.frame_instances())
    assert [i.frame_index for i in instances] == [0, 1, 2, 3]
    assert all(torch.equal(i.masks, frame) for i, frame in zip(instances, result.frame_masks(), strict=True))


Q, K, C, H, W = 3, 2, 4, 2, 2
GOOD_FRAME = (torch.zeros(Q, K + 1), torch.zeros(Q, H, W), torch.rand(Q, C))


def test_zero_frames() -> None:
    with pytest.raises(ValueError, match="no frames"):
        paper_exact_video_results(
            torch.zeros(0, Q, K + 1), torch.zeros(0, Q, H, W), torch.zeros(0, Q, C), **SIZES
        )


def test_malformed_stacks_and_frames() -> None:
    with pytest.raises(ValueError, match="shorter|longer"):
        paper_exact_video_results(
            torch.zeros(2, Q, K + 1), torch.zeros(1, Q, H, W), torch.zeros(2, Q, C), **SIZES
        )
    with pytest.raises(ValueError, match=r"logits \[Q, K\+1\]"):
        frame_outputs(torch.zeros(Q, K + 1, 1), *GOOD_FRAME[1:])
    logits, masks, _ = GOOD_FRAME
    with pytest.raises(ValueError, match=r"embds \[Q, C\]"):
        frame_outputs(logits, masks, torch.rand(Q + 1, C))
    with pytest.raises(ValueError, match="no-object"):
        frame_outputs(torch.zeros(Q, 1), masks, torch.rand(Q, C))


@pytest.mark.parametrize(
    "bad_frame",
    [
        (torch.zeros(Q, K + 1), torch.zeros(Q, H + 1, W), torch.rand(Q, C)),
        (torch.zeros(Q, K + 2), torch.zeros(Q, H, W), torch.rand(Q, C)),
        (torch.zeros(Q + 1, K + 1), torch.zeros(Q + 1, H, W), torch.rand(Q + 1, C)),
        (torch.zeros(Q, K + 1), torch.zeros(Q, H, W), torch.rand(Q, C + 1)),
    ],
    ids=["mask-size", "classes", "queries", "channels"],
)
def test_shapes_must_stay_constant(bad_frame: tuple[torch.Tensor, ...]) -> None:
    frames = [frame_outputs(*GOOD_FRAME), frame_outputs(*bad_frame)]
    with pytest.raises(ValueError, match="must stay constant"):
        track_video(frames, (4, 4))
    with pytest.raises(ValueError, match="must stay constant"):
        list(track_stream(frames, (4, 4)))
