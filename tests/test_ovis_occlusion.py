"""OVIS occlusion AP/AR (light / medium / heavy): parity with the OVIS authors' evaluator on
recorded fixtures, and hand-computed cases of its definitions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_ytvis_metric import make_gt, pred, tracks

from minvis.evaluation.ytvis_metric import (
    OCCLUSION_STAT_NAMES,
    OVIS_STAT_NAMES,
    STAT_NAMES,
    evaluate_ytvis,
)
from minvis.ytvis_format import YTVISFormatError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "ovis_occlusion"
SHARED = REPO.parent / "shared" / "fixtures"
N, SL, SE = "no_occlusion", "slight_occlusion", "severe_occlusion"


def load(case: str, kind: str) -> Any:
    return json.loads((FIXTURES / f"{case}.{kind}.json").read_text())


@pytest.mark.parametrize("case", ["evalcase_s0_occlusion", "handmade"])
def test_fixture_parity_with_the_ovis_evaluator(case: str) -> None:
    expected = load(case, "expected")["stats"]
    metrics = evaluate_ytvis(load(case, "gt"), load(case, "results"))
    assert list(metrics.stats) == list(STAT_NAMES)
    assert list(metrics.occlusion_stats) == list(OCCLUSION_STAT_NAMES)
    ovis = metrics.reported_stats
    assert list(ovis) == list(OVIS_STAT_NAMES) == list(expected)
    for name in OVIS_STAT_NAMES:
        assert ovis[name] == pytest.approx(expected[name], abs=1e-9), name


def test_occlusion_leaves_the_twelve_numbers_unchanged() -> None:
    expected = json.loads((SHARED / "evalcase_s0.expected.json").read_text())["stats"]
    case = "evalcase_s0_occlusion"
    with_occlusion = evaluate_ytvis(load(case, "gt"), load(case, "results"))
    for name in STAT_NAMES:
        assert with_occlusion.stats[name] == pytest.approx(expected[name], abs=1e-9), name


def test_no_occlusion_in_the_ground_truth_gives_no_split() -> None:
    masks = tracks((0, 5, 0, 5))
    metrics = evaluate_ytvis(make_gt([(masks, 1, 0)]), [pred(masks, 0.9)])
    assert metrics.occlusion_stats == {}
    assert metrics.reported_stats == metrics.stats


def occluded_gt(*tracks_and_occlusion: tuple[np.ndarray, object], crowd: tuple[int, ...] = ()) -> dict:
    gt = make_gt([(masks, 1, int(i in crowd)) for i, (masks, _) in enumerate(tracks_and_occlusion)])
    for ann, (_, occlusion) in zip(gt["annotations"], tracks_and_occlusion, strict=True):
        if occlusion is not None:
            ann["occlusion"] = occlusion
    return gt


def buckets(metrics) -> dict[str, float]:
    """AP per occlusion bucket, rounded (a perfect AP is 1 - 2e-16: precision is tp / (tp + fp + eps))."""
    stats = metrics.occlusion_stats
    return {name.removeprefix("AP_"): round(v, 9) for name, v in stats.items() if name.startswith("AP_")}


@pytest.mark.parametrize(
    ("occlusion", "light", "medium", "heavy"),
    [
        ([N, N, N, N], 1.0, -1.0, -1.0),  # 0
        ([N, N, SL, N], 1.0, -1.0, -1.0),  # top half [0, 0.25]: 0.125
        ([SL, N, N, SL], 1.0, 1.0, -1.0),  # top half [0.25, 0.25]: 0.25, both bounds inclusive
        ([SL, N, SE, N], -1.0, 1.0, 1.0),  # top half [0.25, 0.75]: 0.5
        ([N, N, N, SE], -1.0, 1.0, -1.0),  # top half [0, 0.75]: 0.375
        ([SE, None, None, None], -1.0, -1.0, 1.0),  # one value: 0.75; nulls do not count
        ([N, SL, SE, None], -1.0, 1.0, 1.0),  # three values: top two [0.25, 0.75]
        ([0.3, 0.9, 0.0, None], -1.0, -1.0, 1.0),  # numbers: top two [0.3, 0.9] -> 0.6
        (SL, 1.0, 1.0, -1.0),  # one value for the whole track
        (0.45, -1.0, 1.0, -1.0),
    ],
)
def test_track_score_is_the_mean_of_its_most_occluded_half(occlusion, light, medium, heavy) -> None:
    masks = tracks((0, 5, 0, 5), (0, 5, 1, 6), (1, 6, 1, 6), (2, 7, 2, 7))
    metrics = evaluate_ytvis(occluded_gt((masks, occlusion)), [pred(masks, 0.9)])
    assert buckets(metrics) == {"light": light, "medium": medium, "heavy": heavy}
    assert metrics.stats["AP"] == pytest.approx(1.0)


def test_unmatched_predictions_count_in_every_bucket() -> None:
    """Occlusion is a property of the ground truth: a false positive is one in every bucket."""
    light, heavy = tracks((0, 5, 0, 5)), tracks((10, 15, 10, 15))
    nowhere = tracks((0, 3, 15, 20))
    gt = occluded_gt((light, [N]), (heavy, [SE]))
    metrics = evaluate_ytvis(gt, [pred(nowhere, 0.95), pred(light, 0.9), pred(heavy, 0.8)])
    # light: the false positive, then the light track; the heavy track's prediction is matched
    # to a ground truth outside the bucket, so ignored. AP = 1/2 at every recall up to 1.
    assert buckets(metrics) == {"light": 0.5, "medium": -1.0, "heavy": 0.5}
    assert metrics.occlusion_stats["AR_light"] == pytest.approx(1.0)
    assert metrics.occlusion_stats["AR_medium"] == -1.0
    assert metrics.stats["AP"] == pytest.approx(2 / 3)  # precision 0, 1/2, 2/3: envelope 2/3


def test_a_crowd_needs_no_occlusion() -> None:
    masks, crowd = tracks((0, 5, 0, 5)), tracks((10, 20, 10, 20))
    metrics = evaluate_ytvis(occluded_gt((masks, [SE]), (crowd, None), crowd=(1,)), [pred(masks, 0.9)])
    assert buckets(metrics) == {"light": -1.0, "medium": -1.0, "heavy": 1.0}


@pytest.mark.parametrize(
    ("occlusion", "message"),
    [
        ([N, "partly"], r"annotation 0 \(id 1, video_id 1\) frame 1: occlusion 'partly' is neither"),
        ([N, 1.5], r"frame 1: occlusion 1.5 is neither"),
        ([None, None], r"annotation 0 .*occlusion has no value"),
        ([N], r"annotation 0 .*1 occlusion values for a video of 2 frames"),
        (True, r"annotation 0 .* occlusion: occlusion True is neither"),
    ],
)
def test_invalid_occlusion_names_the_annotation(occlusion: object, message: str) -> None:
    masks = tracks((0, 5, 0, 5), (0, 5, 0, 5))
    with pytest.raises(YTVISFormatError, match=message):
        evaluate_ytvis(occluded_gt((masks, occlusion)), [], gt_source="gt.json")


def test_a_track_without_occlusion_among_tracks_with_is_an_error() -> None:
    masks = tracks((0, 5, 0, 5))
    gt = occluded_gt((masks, [N]), (masks, None))
    message = r"^gt.json: ground-truth annotation 1 \(id 2, .*no 'occlusion'"
    with pytest.raises(YTVISFormatError, match=message):
        evaluate_ytvis(gt, [], gt_source="gt.json")


def eval_cli(gt: Path, results: Path, *options: str | Path) -> str:
    script = REPO / "tools" / "eval" / "eval_results.py"
    command = [sys.executable, script, "--gt", gt, "--results", results, *options]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_eval_cli_prints_and_writes_the_occlusion_numbers(tmp_path: Path) -> None:
    json_out = tmp_path / "metrics.json"
    out = eval_cli(FIXTURES / "handmade.gt.json", FIXTURES / "handmade.results.json", "--json-out", json_out)
    printed = dict(line.split() for line in out.splitlines()[1:19])
    expected = load("handmade", "expected")["stats"]
    assert list(printed) == list(OVIS_STAT_NAMES)
    for name, value in printed.items():
        assert float(value) == pytest.approx(expected[name], abs=5e-5), name
    written = json.loads(json_out.read_text())
    assert list(written) == list(OVIS_STAT_NAMES)
    assert written == pytest.approx({name: expected[name] for name in OVIS_STAT_NAMES}, abs=1e-9)


def test_eval_cli_prints_no_occlusion_rows_without_occlusion() -> None:
    out = eval_cli(SHARED / "evalcase_s0.gt.json", SHARED / "evalcase_s0.results.json")
    assert "AP_light" not in out
