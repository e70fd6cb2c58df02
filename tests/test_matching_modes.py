"""Tracking cost modes (paper Table 4) on hand-built frames where query and mask matching disagree."""

import math

import pytest
import torch

from minvis.config import build_config
from minvis.inference import FrameOutputs, MaskGeometry, OnlineTrackScorer, VideoResultAccumulator
from minvis.modeling import tracking_options
from minvis.tracking import (
    PAPER_TRACKING,
    FrameQueries,
    MaskOverlapCost,
    QueryCost,
    QueryTracker,
    TrackingOptions,
    matching_cost_terms,
)

WEIGHTS = {"class_weight": 2.0, "mask_weight": 5.0, "dice_weight": 5.0}  # the R50 config's
LOGIT = 6.0
SIZES = {"image_size": (4, 4), "padded_size": (4, 4), "output_size": (4, 4)}


def tracker(mode: str) -> QueryTracker:
    return QueryTracker(TrackingOptions(matching_cost_terms(mode, **WEIGHTS)))


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
    return [t.step(embds, logits, masks).tolist() for logits, masks, embds in frames]


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
    tracks = FrameQueries(EMBEDDINGS, *FRAME0[:2])
    current = FrameQueries(torch.randn(2, 2), *FRAME1[:2])
    (heuristic,) = matching_cost_terms("heuristic", **WEIGHTS)
    (query,) = matching_cost_terms("query", **WEIGHTS)
    both = matching_cost_terms("heuristic+query", **WEIGHTS)
    total = sum(term(tracks, current) for term in both)
    assert torch.allclose(total, heuristic(tracks, current) + query(tracks, current))


def test_mask_overlap_cost_by_hand() -> None:
    # One track: argmax class 0, mask logits [3, -3] -> target mask [1, 0].
    tracks = FrameQueries(torch.ones(1, 2), torch.tensor([[2.0, 0.0]]), torch.tensor([[[3.0, -3.0]]]))
    # One query: p(class 0) = 3/4; mask logits 0 -> probabilities 1/2 on both pixels.
    current = FrameQueries(torch.ones(1, 2), torch.tensor([[math.log(3.0), 0.0]]), torch.zeros(1, 1, 2))
    cost = MaskOverlapCost(**WEIGHTS)(tracks, current)
    # class -3/4; BCE ln 2 per pixel; dice 1 - (2 * 1/2 + 1) / (1 + 1 + 1) = 1/3.
    expected = 2.0 * -0.75 + 5.0 * math.log(2.0) + 5.0 / 3.0
    assert cost.shape == (1, 1)
    assert cost.item() == pytest.approx(expected, rel=1e-6)


def test_mask_overlap_cost_is_deterministic_and_rectangular() -> None:
    generator = torch.Generator().manual_seed(0)
    tracks = FrameQueries(torch.randn(5, 3), torch.randn(5, 4), torch.randn(5, 6, 7))
    current = FrameQueries(torch.randn(3, 3), torch.randn(3, 4), torch.randn(3, 6, 7, generator=generator))
    cost = MaskOverlapCost(**WEIGHTS)(tracks, current)
    assert cost.shape == (5, 3)
    assert torch.equal(cost, MaskOverlapCost(**WEIGHTS)(tracks, current))
    assert QueryCost()(tracks, current).shape == (5, 3)


def test_accumulator_and_streaming_follow_the_mode() -> None:
    # Track 1 starts on the right; does it stay there on frame 1?
    for mode, stays_right in (("query", False), ("heuristic", True)):
        options = tracker(mode).options
        accumulator = VideoResultAccumulator(MaskGeometry(**SIZES), top_k=2, tracking=options)
        streaming = OnlineTrackScorer(MaskGeometry(**SIZES), score_threshold=0.0, tracking=options)
        for frame in (FRAME0, FRAME1):
            accumulator.add_frame(FrameOutputs(*frame))
            instances = streaming.step(FrameOutputs(*frame))
        tracks = accumulator.selection().tracks
        assert sorted(tracks.tolist()) == [0, 1]
        masks = torch.stack(list(accumulator.iter_frame_masks(tracks)), dim=1)  # [k, T, H, W]
        on_right = masks[:, :, :, 2:].flatten(2).any(dim=2)[tracks == 1][0]  # [T]
        assert on_right.tolist() == [True, stays_right]
        assert instances.track_ids.tolist() == [0, 1]
        assert bool(instances.masks[1, :, 2:].any()) == stays_right


def test_heuristic_mode_needs_logits_and_masks() -> None:
    with pytest.raises(ValueError, match="logits and masks"):
        tracker("heuristic").step(EMBEDDINGS)


def test_config_modes() -> None:
    cfg = build_config(None)
    assert tracking_options(cfg) == PAPER_TRACKING
    cfg.MODEL.MASK_FORMER.CLASS_WEIGHT, cfg.MODEL.MASK_FORMER.MASK_WEIGHT = 2.0, 5.0
    cfg.MODEL.MINVIS.MATCHING = "heuristic+query"
    terms = tracking_options(cfg).cost_terms
    assert terms == (MaskOverlapCost(2.0, 5.0, cfg.MODEL.MASK_FORMER.DICE_WEIGHT), QueryCost())
    cfg.MODEL.MINVIS.MATCHING = "overlap"
    with pytest.raises(ValueError, match="unknown matching mode"):
        tracking_options(cfg)
