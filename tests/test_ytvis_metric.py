"""YouTube-VIS metric: parity with the official evaluator and hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from minvis.evaluation.ytvis_metric import STAT_NAMES, evaluate_ytvis
from minvis.ytvis_format import YTVISFormatError, encode_masks

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
H, W = 20, 20


def tracks(*frames: tuple[int, int, int, int] | None, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """[T, h, w] masks from one (y0, y1, x0, x1) box or None (empty) per frame."""
    masks = np.zeros((len(frames), *size), dtype=bool)
    for t, box in enumerate(frames):
        if box is not None:
            y0, y1, x0, x1 = box
            masks[t, y0:y1, x0:x1] = True
    return masks


def make_gt(annotations: list[tuple[np.ndarray, int, int]], size: tuple[int, int] = (H, W)) -> dict[str, Any]:
    """One video holding (masks, category_id, iscrowd) annotations; categories 1 and 2."""
    length = annotations[0][0].shape[0]
    anns = [
        {
            "id": i + 1,
            "video_id": 1,
            "category_id": category,
            "iscrowd": crowd,
            "segmentations": encode_masks(masks),
            "areas": [int(m.sum()) or None for m in masks],
        }
        for i, (masks, category, crowd) in enumerate(annotations)
    ]
    video = {"id": 1, "height": size[0], "width": size[1], "length": length}
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    return {"videos": [video], "categories": categories, "annotations": anns}


def pred(masks: np.ndarray, score: float, category: int = 1) -> dict[str, Any]:
    return {
        "video_id": 1,
        "category_id": category,
        "score": score,
        "segmentations": encode_masks(masks),
    }


def test_fixture_parity() -> None:
    gt = json.loads((FIXTURES / "evalcase_s0.gt.json").read_text())
    results = json.loads((FIXTURES / "evalcase_s0.results.json").read_text())
    expected = json.loads((FIXTURES / "evalcase_s0.expected.json").read_text())["stats"]
    metrics = evaluate_ytvis(gt, results)
    assert list(metrics.stats) == list(STAT_NAMES) == list(expected)
    for name in STAT_NAMES:
        assert metrics.stats[name] == pytest.approx(expected[name], abs=1e-9), name
    assert set(metrics.per_category_ap) == {c["id"] for c in gt["categories"]}


@pytest.mark.parametrize("max_pixels", [1, 3 * 180 * 320])  # one frame per chunk; three
def test_fixture_parity_with_tracks_in_chunks(max_pixels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracks cut into several pycocotools RLEs (as beyond 2**32 pixels) score the same."""
    from minvis.evaluation import track_masks

    gt = json.loads((FIXTURES / "evalcase_s0.gt.json").read_text())
    results = json.loads((FIXTURES / "evalcase_s0.results.json").read_text())
    expected = json.loads((FIXTURES / "evalcase_s0.expected.json").read_text())["stats"]
    monkeypatch.setattr(track_masks, "MAX_RLE_PIXELS", max_pixels)
    metrics = evaluate_ytvis(gt, results)
    for name in STAT_NAMES:
        assert metrics.stats[name] == pytest.approx(expected[name], abs=1e-9), name


def test_perfect_prediction() -> None:
    masks = tracks((0, 5, 0, 5), (1, 6, 1, 6), None)
    stats = evaluate_ytvis(make_gt([(masks, 1, 0)]), [pred(masks, 0.9)]).stats
    for name in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100", "ARs"):
        assert stats[name] == pytest.approx(1.0), name


def test_spatio_temporal_iou_sums_over_frames() -> None:
    # frame 0: identical 30-pixel masks; frame 1: only the ground truth (20 pixels).
    # IoU = 30 / 50 = 0.6 (the mean of per-frame IoUs would be 0.5).
    gt = tracks((0, 3, 0, 10), (0, 2, 0, 10))
    dt = tracks((0, 3, 0, 10), None)
    stats = evaluate_ytvis(make_gt([(gt, 1, 0)]), [pred(dt, 0.9)]).stats
    assert stats["AP50"] == pytest.approx(1.0)
    assert stats["AP75"] == 0.0
    assert stats["AP"] == pytest.approx(0.3)  # thresholds 0.50, 0.55, 0.60 of ten


def test_frame_with_only_a_prediction_adds_to_the_union() -> None:
    gt = tracks((0, 3, 0, 10), None)
    dt = tracks((0, 3, 0, 10), (0, 2, 0, 10))  # 30 / (30 + 20) = 0.6
    stats = evaluate_ytvis(make_gt([(gt, 1, 0)]), [pred(dt, 0.9)]).stats
    assert stats["AP"] == pytest.approx(0.3)


def test_higher_scored_false_positive_halves_precision() -> None:
    gt = tracks((0, 5, 0, 5))
    results = [pred(tracks((10, 15, 10, 15)), 0.9), pred(gt, 0.5)]
    metrics = evaluate_ytvis(make_gt([(gt, 1, 0)]), results)
    assert metrics.stats["AP"] == pytest.approx(0.5)
    assert metrics.stats["AR1"] == 0.0
    assert metrics.stats["AR10"] == pytest.approx(1.0)
    assert metrics.per_category_ap == {1: pytest.approx(0.5), 2: -1.0}


def test_crowd_ground_truth_is_ignored() -> None:
    regular = tracks((0, 5, 0, 5))
    crowd = tracks((10, 20, 10, 20))
    results = [pred(crowd, 0.9), pred(crowd, 0.8), pred(regular, 0.5)]
    gt = make_gt([(regular, 1, 0), (crowd, 1, 1)])
    stats = evaluate_ytvis(gt, results).stats
    # the crowd needs no prediction and absorbs both predictions on it
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AR100"] == pytest.approx(1.0)


def test_buckets_without_ground_truth_are_minus_one() -> None:
    masks = tracks((0, 5, 0, 5))
    metrics = evaluate_ytvis(make_gt([(masks, 1, 0)]), [pred(masks, 0.9)])
    for name in ("APm", "APl", "ARm", "ARl"):
        assert metrics.stats[name] == -1.0, name
    assert metrics.per_category_ap[2] == -1.0


def test_unmatched_prediction_outside_the_bucket_is_ignored() -> None:
    size = (140, 140)
    small = tracks((0, 5, 0, 5), size=size)
    large_fp = tracks((0, 130, 0, 130), size=size)  # mean area 16900 > 128²
    results = [pred(large_fp, 0.9), pred(small, 0.5)]
    stats = evaluate_ytvis(make_gt([(small, 1, 0)], size=size), results).stats
    assert stats["AP"] == pytest.approx(0.5)
    assert stats["APs"] == pytest.approx(1.0)


def test_no_results_gives_zero() -> None:
    masks = tracks((0, 5, 0, 5))
    stats = evaluate_ytvis(make_gt([(masks, 1, 0)]), []).stats
    assert stats["AP"] == 0.0
    assert stats["AR100"] == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"video_id": 7}, r"results entry 1 \(video_id 7\): unknown video"),
        ({"category_id": 9}, r"results entry 1 \(video_id 1\): unknown category 9"),
        ({"segmentations": [None]}, r"results entry 1 .*1 segmentations for a video of 2"),
        ({"segmentations": [{"counts": "00"}, None]}, r"entry 1 .*frame 0: .*'size'"),
        ({"segmentations": [None, {"size": [H, W]}]}, r"entry 1 .*frame 1: .*'counts'"),
        (
            {"segmentations": [encode_masks(np.ones((1, H, W + 1), dtype=bool))[0], None]},
            r"results entry 1 .*frame 0: mask size \[20, 21\] differs",
        ),
    ],
)
def test_invalid_results_name_the_entry(change: dict[str, Any], message: str) -> None:
    masks = tracks((0, 5, 0, 5), None)
    results = [pred(masks, 0.9), {**pred(masks, 0.8), **change}]
    with pytest.raises(YTVISFormatError, match=message):
        evaluate_ytvis(make_gt([(masks, 1, 0)]), results)


def test_ground_truth_mask_size_must_match_its_video() -> None:
    gt = make_gt([(tracks((0, 5, 0, 5)), 1, 0)])
    gt["annotations"][0]["segmentations"][0]["size"] = [H + 1, W]
    with pytest.raises(YTVISFormatError, match=r"annotation 0 \(id 1, video_id 1\) frame 0"):
        evaluate_ytvis(gt, [])


def test_polygon_ground_truth() -> None:
    gt = make_gt([(tracks((0, 5, 0, 5)), 1, 0)])
    polygon = [[2.0, 2.0, 12.0, 2.0, 12.0, 9.0, 2.0, 9.0]]
    gt["annotations"][0]["segmentations"] = [polygon]
    rle = mask_utils.frPyObjects(polygon, H, W)
    masks = mask_utils.decode(rle).transpose(2, 0, 1).astype(bool)
    gt["annotations"][0]["areas"] = [float(masks.sum())]
    stats = evaluate_ytvis(gt, [pred(masks, 0.9)]).stats
    assert stats["AP"] == pytest.approx(1.0)


def test_ground_truth_bucket_comes_from_its_areas_field() -> None:
    masks = tracks((0, 5, 0, 5))
    gt = make_gt([(masks, 1, 0)])
    gt["annotations"][0]["areas"] = [200.0**2]  # as the official evaluator, trust the file
    stats = evaluate_ytvis(gt, [pred(masks, 0.9)]).stats
    assert stats["APs"] == -1.0
    assert stats["APm"] == pytest.approx(1.0)
