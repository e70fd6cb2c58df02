"""Frame sub-sampling (SAMPLING_FRAME_RATIO) and clip sampling follow the official mapper."""

import json
import random
import runpy
from pathlib import Path

import numpy as np
import pytest

from minvis.data.sampling import sample_clip_frames, subsampled_frame_indices

TOOL = Path(__file__).resolve().parents[1] / "tools" / "data" / "subsample_annotations.py"
subsample_main = runpy.run_path(str(TOOL))["main"]

# Hand-computed: n = max(round(L * r), 1) with round-half-to-even; n == 1 -> L // 2;
# otherwise floor(i * L / n) for i < n; r == 1 -> every frame.
EXPECTED = {
    (1, 0.01): [0], (1, 0.05): [0], (1, 0.1): [0], (1, 0.5): [0], (1, 1.0): [0],
    (2, 0.01): [1], (2, 0.05): [1], (2, 0.1): [1], (2, 0.5): [1], (2, 1.0): [0, 1],
    (5, 0.01): [2], (5, 0.05): [2], (5, 0.1): [2], (5, 0.5): [0, 2], (5, 1.0): [0, 1, 2, 3, 4],
    (10, 0.01): [5], (10, 0.05): [5], (10, 0.1): [5], (10, 0.5): [0, 2, 4, 6, 8],
    (10, 1.0): list(range(10)),
    (36, 0.01): [18], (36, 0.05): [0, 18], (36, 0.1): [0, 9, 18, 27],
    (36, 0.5): list(range(0, 36, 2)), (36, 1.0): list(range(36)),
    (37, 0.01): [18], (37, 0.05): [0, 18], (37, 0.1): [0, 9, 18, 27],
    (37, 0.5): list(range(0, 36, 2)), (37, 1.0): list(range(37)),
    (100, 0.01): [50], (100, 0.05): [0, 20, 40, 60, 80], (100, 0.1): list(range(0, 100, 10)),
    (100, 0.5): list(range(0, 100, 2)), (100, 1.0): list(range(100)),
}  # fmt: skip


@pytest.mark.parametrize(("length", "ratio"), sorted(EXPECTED))
def test_subsampled_frames_are_the_official_ones(length, ratio):
    assert subsampled_frame_indices(length, ratio) == EXPECTED[(length, ratio)]


def test_single_kept_frame_is_the_middle_one():
    for length in range(1, 60):
        assert subsampled_frame_indices(length, 0.01) == [length // 2]


def test_float_linspace_is_kept_like_the_official_code():
    # 11 * 30 / 22 = 15 exactly, but the official float linspace gives 14.999... -> 14.
    kept = subsampled_frame_indices(30, 0.75)
    assert len(kept) == 22 and kept[11] == 14
    assert kept == np.linspace(0, 30, num=22, endpoint=False, dtype=int).tolist()


def test_invalid_length_or_ratio_is_rejected():
    with pytest.raises(ValueError, match="at least one frame"):
        subsampled_frame_indices(0, 0.1)
    with pytest.raises(ValueError, match="positive"):
        subsampled_frame_indices(10, 0.0)


def test_clip_of_one_frame_is_drawn_among_the_kept_frames():
    rng = random.Random(0)
    drawn = {sample_clip_frames(100, 1, 20, 0.05, False, rng)[0] for _ in range(300)}
    assert drawn == {0, 20, 40, 60, 80}


def test_subsampling_needs_one_frame_clips():
    with pytest.raises(ValueError, match="SAMPLING_FRAME_NUM"):
        sample_clip_frames(10, 2, 20, 0.5, False, random.Random(0))


def test_clip_frames_stay_within_range_of_a_reference_and_are_sorted():
    rng = random.Random(0)
    for _ in range(300):
        clip = sample_clip_frames(50, 3, 2, 1.0, False, rng)
        assert len(clip) == 3 and clip == sorted(clip)
        assert max(clip) - min(clip) <= 4 and all(0 <= f < 50 for f in clip)
    assert {sample_clip_frames(50, 1, 2, 1.0, False, rng)[0] for _ in range(2000)} == set(range(50))


def test_clip_shuffle_and_one_frame_video():
    rng = random.Random(1)
    clips = [sample_clip_frames(40, 4, 20, 1.0, True, rng) for _ in range(100)]
    assert any(c != sorted(c) for c in clips)
    assert sample_clip_frames(1, 3, 20, 1.0, False, rng) == [0, 0, 0]


def _write_json(path, lengths):
    videos = [
        {"id": i + 1, "length": n, "file_names": [], "height": 4, "width": 4} for i, n in enumerate(lengths)
    ]
    rle = {"size": [4, 4], "counts": [5, 2, 9]}
    annotations = [
        {"id": 1, "video_id": 1, "category_id": 1, "segmentations": [rle] * lengths[0], "bboxes": None},
        {"id": 2, "video_id": 2, "category_id": 1, "segmentations": [None, rle] + [None] * (lengths[1] - 2)},
    ]
    path.write_text(json.dumps({"videos": videos, "annotations": annotations, "categories": []}))


def test_subsample_tool_keeps_the_official_frames(tmp_path, capsys):
    src, out = tmp_path / "train.json", tmp_path / "train_r10.json"
    _write_json(src, [36, 10])
    assert subsample_main(["--json", str(src), "--ratio", "0.1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    segms = result["annotations"][0]["segmentations"]
    assert [t for t, s in enumerate(segms) if s] == [0, 9, 18, 27]
    # Video 2 keeps frame 5 only, where its track is invisible: the track is dropped.
    assert [a["id"] for a in result["annotations"]] == [1]
    report = capsys.readouterr().out
    assert "annotated frames kept: 5 (per video min 1, mean 2.50, max 4)" in report
    assert "kept frames showing at least one object: 4" in report


def test_subsample_tool_refuses_to_overwrite(tmp_path):
    src, out = tmp_path / "train.json", tmp_path / "out.json"
    _write_json(src, [36, 10])
    out.write_text("keep me")
    with pytest.raises(SystemExit):
        subsample_main(["--json", str(src), "--ratio", "0.1", "--out", str(out)])
    assert out.read_text() == "keep me"
    assert subsample_main(["--json", str(src), "--ratio", "0.1", "--out", str(out), "--overwrite"]) == 0
    with pytest.raises(SystemExit):
        subsample_main(["--json", str(src), "--ratio", "1.5", "--out", str(out), "--overwrite"])
