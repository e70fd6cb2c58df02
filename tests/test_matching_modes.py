"""Tracking cost modes (paper Table 4) on hand-built frames where query and mask matching disagree."""

import math
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from helpers import frame_outputs

from minvis.config import build_config
from minvis.tracking import (
    Tracker,
    mask_overlap_cost,
    matching_cost,
    query_cost,
    track_stream,
    track_video,
)

TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"
WEIGHTS = {"class_weight": 2.0, "mask_weight": 5.0, "dice_weight": 5.0}  # the R50 config's
LOGIT = 6.0


def tracker(mode: str) -> Tracker:
    return Tracker(matching_cost(mode, **WEIGHTS))


def halves(*sides: str) -> torch.Tensor:
    """``[len(sides), 4, 4]`` mask logits: +LOGIT on the named half ("left"/"right"), else -LOGIT."""
    masks = torch.full((len(sides), 4, 4), -LOGIT)
    for i, side in enumerate(sides):
        columns = slice(0, 2) if side == "left" else slice(2, 4)
        masks[i, :, columns] = LOGIT
    return masks


def confident(num_queries: int, label: int = 0, num_classes: int = 2) -> torch.Tensor:
    """``[Q, K+1]`` logits all confident in ``label``."""
    logits = torch.zeros(num_queries, num_classes + 1)
    logits[:, label] = LOGIT
    return logits


# Frame 0: query 0 = object on the left (embedding e0), query 1 = object on the right (e1).
# Frame 1: the embeddings stay with their slots but the masks swap sides, so query
# matching keeps the slots and mask-overlap matching swaps them.
EMBEDDINGS = torch.eye(2)
FRAME0 = (confident(2), halves("left", "right"), EMBEDDINGS)
FRAME1 = (confident(2), halves("right", "left"), EMBEDDINGS)


def run(mode: str, frames: list[tuple[torch.Tensor, ...]]) -> list[list[int]]:
    t = tracker(mode)
    return [t.step(frame_outputs(*frame)).tolist() for frame in frames]


def test_query_and_heuristic_disagree() -> None:
    assert run("query", [FRAME0, FRAME1]) == [[0, 1], [0, 1]]
    assert run("heuristic", [FRAME0, FRAME1]) == [[0, 1], [1, 0]]
    # With these weights the mask terms outweigh the query cost's difference of 2.
    assert run("heuristic+query", [FRAME0, FRAME1]) == [[0, 1], [1, 0]]


def test_each_term_breaks_the_other_ones_tie() -> None:
    same_embeddings = torch.ones(2, 2)  # query cost ties: the masks decide
    frames = [(logits, masks, same_embeddings) for logits, masks, _ in (FRAME0, FRAME1)]
    assert run("heuristic+query", frames) == [[0, 1], [1, 0]]
    same_masks = halves("left", "left")  # mask cost ties: the embeddings decide
    swapped = torch.eye(2)[[1, 0]]
    frames = [(confident(2), same_masks, EMBEDDINGS), (confident(2), same_masks, swapped)]
    assert run("heuristic+query", frames) == [[0, 1], [1, 0]]
    assert run("heuristic", frames) == [[0, 1], [0, 1]]  # tie: the solver's first choice


def test_combined_cost_is_the_sum_of_equal_weight_terms() -> None:
    tracks = frame_outputs(*FRAME0)
    current = frame_outputs(*FRAME1[:2], torch.randn(2, 2))
    heuristic, query = matching_cost("heuristic", **WEIGHTS), matching_cost("query", **WEIGHTS)
    total = matching_cost("heuristic+query", **WEIGHTS)(tracks, current)
    assert query is query_cost
    assert torch.allclose(total, heuristic(tracks, current) + query(tracks, current))


def test_mask_overlap_cost_by_hand() -> None:
    # One track: argmax class 0, mask logits [3, -3] -> target mask [1, 0].
    tracks = frame_outputs(torch.tensor([[2.0, 0.0]]), torch.tensor([[[3.0, -3.0]]]), torch.ones(1, 2))
    # One query: p(class 0) = 3/4; mask logits 0 -> probabilities 1/2 on both pixels.
    current = frame_outputs(torch.tensor([[math.log(3.0), 0.0]]), torch.zeros(1, 1, 2), torch.ones(1, 2))
    cost = mask_overlap_cost(tracks, current, **WEIGHTS)
    # class -3/4; BCE ln 2 per pixel; dice 1 - (2 * 1/2 + 1) / (1 + 1 + 1) = 1/3.
    expected = 2.0 * -0.75 + 5.0 * math.log(2.0) + 5.0 / 3.0
    assert cost.shape == (1, 1)
    assert cost.item() == pytest.approx(expected, rel=1e-6)


def test_mask_overlap_cost_is_deterministic_and_rectangular() -> None:
    generator = torch.Generator().manual_seed(0)
    tracks = frame_outputs(torch.randn(5, 4), torch.randn(5, 6, 7), torch.randn(5, 3))
    current = frame_outputs(torch.randn(3, 4), torch.randn(3, 6, 7, generator=generator), torch.randn(3, 3))
    cost = mask_overlap_cost(tracks, current, **WEIGHTS)
    assert cost.shape == (5, 3)
    assert torch.equal(cost, mask_overlap_cost(tracks, current, **WEIGHTS))
    assert query_cost(tracks, current).shape == (5, 3)


def test_video_result_and_streaming_follow_the_mode() -> None:
    # Track 1 starts on the right; does it stay there on frame 1?
    for mode, stays_right in (("query", False), ("heuristic", True)):
        frames = [frame_outputs(*frame) for frame in (FRAME0, FRAME1)]
        cost = matching_cost(mode, **WEIGHTS)
        result = track_video(frames, (4, 4), top_k=2, cost=cost)
        *_, instances = track_stream(frames, (4, 4), score_threshold=0.0, cost=cost)
        masks = torch.stack(list(result.frame_masks()), dim=1)  # [k, T, H, W]
        on_right = masks[:, :, :, 2:].flatten(2).any(dim=2)  # [k, T]
        assert sorted(map(tuple, on_right.tolist())) == sorted(
            [(False, not stays_right), (True, stays_right)]
        )
        assert instances.track_ids.tolist() == [0, 1]
        assert bool(instances.masks[1, :, 2:].any()) == stays_right


def test_config_modes() -> None:
    cfg = build_config(str(TINY_CONFIG), ["MODEL.DEVICE", "cpu"])
    assert build_model(cfg).tracking_cost is query_cost
    cfg.MODEL.MASK_FORMER.CLASS_WEIGHT, cfg.MODEL.MASK_FORMER.MASK_WEIGHT = 2.0, 5.0
    cfg.MODEL.MINVIS.MATCHING = "heuristic+query"
    tracks, current = frame_outputs(*FRAME0), frame_outputs(*FRAME1)
    expected = mask_overlap_cost(tracks, current, 2.0, 5.0, cfg.MODEL.MASK_FORMER.DICE_WEIGHT)
    assert torch.equal(
        build_model(cfg).tracking_cost(tracks, current), expected + query_cost(tracks, current)
    )
    cfg.MODEL.MINVIS.MATCHING = "overlap"
    with pytest.raises(ValueError, match="unknown matching mode"):
        build_model(cfg)
