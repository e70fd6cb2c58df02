"""Track memory and refused matches (paper Figure 5): a vanished object's track is not hijacked."""

import pytest
import torch

from minvis.config import build_config
from minvis.inference import FrameOutputs, MaskGeometry, OnlineTrackScorer, VideoResultAccumulator
from minvis.modeling import tracking_options
from minvis.tracking import NO_QUERY, QueryTracker, TrackingOptions, matching_cost_terms

LOGIT = 6.0
SIZES = {"image_size": (2, 4), "padded_size": (2, 4), "output_size": (2, 4)}


def basis(*rows: int) -> torch.Tensor:
    return torch.eye(4)[list(rows)]


def column_masks(*columns: int | None) -> torch.Tensor:
    """``[Q, 2, 4]`` mask logits: query i covers column ``columns[i]`` (None: empty)."""
    masks = torch.full((len(columns), 2, 4), -LOGIT)
    for i, column in enumerate(columns):
        if column is not None:
            masks[i, :, column] = LOGIT
    return masks


def logits_for(*labels: int | None) -> torch.Tensor:
    """``[Q, 3]`` logits (2 classes + no-object): confident in each label (None: no object)."""
    logits = torch.zeros(len(labels), 3)
    for i, label in enumerate(labels):
        logits[i, 2 if label is None else label] = LOGIT
    return logits


# Objects A (embedding e0, column 0, class 0) and B (e1, column 1, class 1), a background
# query (e2, empty). Frame 1: A vanishes and a new object C (e3, column 3, class 1) shows up.
# Frame 2: C is gone and A is back.
FRAMES = [
    (logits_for(0, 1, None), column_masks(0, 1, None), basis(0, 1, 2)),
    (logits_for(1, 1, None), column_masks(1, 3, None), basis(1, 3, 2)),
    (logits_for(0, 1, None), column_masks(0, 1, None), basis(0, 1, 2)),
]
REFUSING = TrackingOptions(min_similarity=0.5)


def test_paper_tracker_hands_the_vanished_track_to_the_new_object() -> None:
    tracker = QueryTracker()
    perms = [tracker.step(embds).tolist() for _, _, embds in FRAMES]
    # Frame 1: C (query 1) takes A's slot 0; frame 2: A comes back in slot 0 too.
    assert perms == [[0, 1, 2], [1, 0, 2], [0, 1, 2]]


def test_refused_match_keeps_the_slot_for_reentry() -> None:
    tracker = QueryTracker(REFUSING)
    perms = [tracker.step(embds).tolist() for _, _, embds in FRAMES]
    # Frame 1: cos(e0, e3) = 0 < 0.5, so track 0 has no query and C starts track 3.
    # Frame 2: A's query returns to track 0 (its memory e0); track 3 (C) has none.
    assert perms == [[0, 1, 2], [NO_QUERY, 0, 2, 1], [0, 1, 2, NO_QUERY]]
    assert tracker.num_tracks == 4
    assert torch.equal(tracker.aligned_embeddings, basis(0, 1, 2, 3))


def test_accumulator_outputs_stay_well_formed() -> None:
    accumulator = VideoResultAccumulator(MaskGeometry(**SIZES), top_k=4, tracking=REFUSING)
    for frame in FRAMES:
        accumulator.add_frame(FrameOutputs(*frame))
    result = accumulator.finalize().to_dict()
    assert len(result["pred_masks"]) == 4
    assert all(mask.shape == (3, 2, 4) and mask.dtype == torch.bool for mask in result["pred_masks"])
    selection = accumulator.selection()
    by_track = dict(zip(selection.tracks.tolist(), result["pred_masks"], strict=True))
    columns = {track: [m[0].nonzero()[:, 0].tolist() for m in masks] for track, masks in by_track.items()}
    assert columns[0] == [[0], [], [0]]  # A: empty while gone, same track when back
    assert columns[3] == [[], [3], []]  # C: its own track
    # Scores average the logits of the frames where the track has a query, so A (2 frames)
    # and C (1 frame) score as high as B (3 frames).
    pairs = zip(selection.tracks.tolist(), selection.labels.tolist(), selection.scores.tolist(), strict=True)
    score = {(track, label): value for track, label, value in pairs}
    assert score[0, 0] == pytest.approx(score[1, 1]) and score[3, 1] == pytest.approx(score[1, 1])


def test_streaming_ids_survive_the_absence() -> None:
    predictor = OnlineTrackScorer(MaskGeometry(**SIZES), score_threshold=0.5, tracking=REFUSING)
    ids = [predictor.step(FrameOutputs(*frame)).track_ids.tolist() for frame in FRAMES]
    assert ids == [[0, 1], [1, 3], [0, 1]]


def test_heuristic_memory_survives_the_absence() -> None:
    # The refused track also keeps its last mask and logits for the mask-overlap cost.
    options = TrackingOptions(
        matching_cost_terms("heuristic+query", class_weight=1.0, mask_weight=1.0, dice_weight=1.0),
        min_similarity=0.5,
    )
    tracker = QueryTracker(options)
    perms = [tracker.step(embds, logits, masks).tolist() for logits, masks, embds in FRAMES]
    assert perms == [[0, 1, 2], [NO_QUERY, 0, 2, 1], [0, 1, 2, NO_QUERY]]


def test_memory_is_an_exponential_moving_average() -> None:
    tracker = QueryTracker(TrackingOptions(memory_momentum=0.75))
    tracker.step(basis(0, 1))  # memory e
    tracker.step(basis(0, 1) + basis(2, 3))  # 0.75 e + 0.25 (e + f) = e + 0.25 f
    tracker.step(basis(0, 1) + 2 * basis(2, 3))  # 0.75 (e + 0.25 f) + 0.25 (e + 2 f)
    expected = basis(0, 1) + (0.75 * 0.25 + 0.25 * 2) * basis(2, 3)
    assert torch.allclose(tracker.aligned_embeddings, expected)


def test_memory_keeps_a_wobbling_track_above_the_threshold() -> None:
    # A's query wobbles (e.g. partly occluded): cos 0.8 with e0 on frame 1, then the
    # other way on frame 2, where it is only 0.28 from frame 1's but 0.72 from the average.
    e0, e1, e2 = basis(0, 1, 2)
    wobble = [e0, 0.8 * e0 + 0.6 * e2, 0.8 * e0 - 0.6 * e2]
    frames = [torch.stack([a, e1]) for a in wobble]
    last_only = QueryTracker(TrackingOptions(min_similarity=0.7))
    averaged = QueryTracker(TrackingOptions(memory_momentum=0.8, min_similarity=0.7))
    assert [last_only.step(embds).tolist() for embds in frames][-1] == [NO_QUERY, 1, 0]
    assert [averaged.step(embds).tolist() for embds in frames][-1] == [0, 1]


def test_options_from_config_and_validation() -> None:
    cfg = build_config(None)
    cfg.MODEL.MINVIS.TRACK_MEMORY_MOMENTUM = 0.5
    cfg.MODEL.MINVIS.MIN_MATCH_SIMILARITY = 0.2
    options = tracking_options(cfg)
    assert (options.memory_momentum, options.min_similarity, options.refuses_matches) == (0.5, 0.2, True)
    with pytest.raises(ValueError, match="memory_momentum"):
        TrackingOptions(memory_momentum=1.0)
    with pytest.raises(ValueError, match="min_similarity"):
        TrackingOptions(min_similarity=1.5)
    with pytest.raises(ValueError, match="cost term"):
        TrackingOptions(cost_terms=())
