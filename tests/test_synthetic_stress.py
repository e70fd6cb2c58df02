"""Tracking stress presets of the synthetic dataset (tools/analysis/tracking_analysis.py)."""

import numpy as np
import pytest

from minvis.data.synthetic import SyntheticSpec, render_video, stress_spec, video_rng

SPEC = SyntheticSpec(num_frames=16, height=48, width=64)


def videos(preset: str, count: int = 6) -> list:
    return [render_video(video_rng(0, "stress", i), stress_spec(preset, SPEC)) for i in range(count)]


def test_none_is_the_standard_set() -> None:
    assert stress_spec("none", SPEC) == SPEC
    with pytest.raises(ValueError, match="unknown stress preset"):
        stress_spec("fog", SPEC)


def test_lookalike_objects_share_class_and_colour() -> None:
    for video in videos("lookalike"):
        assert len(set(video.category_ids)) == 1 and len(video.category_ids) >= 3


def test_reentry_objects_leave_and_come_back() -> None:
    for video in videos("reentry"):
        for present in video.visible_masks.any(axis=(2, 3)):  # [T] per object
            frames = np.flatnonzero(present)
            assert not present[frames[0] : frames[-1] + 1].all()  # a gap inside the track


def test_occluder_hides_the_objects_behind_it() -> None:
    spec = stress_spec("occlusion", SPEC)
    band = slice(int(SPEC.width / 2 - spec.occluder_width * SPEC.width / 2) + 1, SPEC.width // 2)
    for video in videos("occlusion"):
        assert len(video.category_ids) >= 3
        assert not video.visible_masks[..., band].any()
        assert video.amodal_masks[..., band].any()  # something did pass behind it
