"""Whole-track RLEs against dense masks laid side by side, with and without chunking."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from minvis.evaluation import track_masks
from minvis.evaluation.track_masks import TrackShape, build_track_masks
from minvis.ytvis_format import decode_counts_string, decode_rles, encode_masks


def _random_track(rng: np.random.Generator, height: int, width: int, frames: int) -> list[np.ndarray | None]:
    track: list[np.ndarray | None] = []
    for _ in range(frames):
        kind = rng.integers(6)
        if kind == 0:
            track.append(None)
        elif kind == 1:
            track.append(np.zeros((height, width), dtype=bool))
        elif kind == 2:
            track.append(np.ones((height, width), dtype=bool))
        else:
            track.append(rng.random((height, width)) < rng.random())
    return track


def _tracks(seed: int) -> list[tuple[int, int, list[np.ndarray | None]]]:
    rng = np.random.default_rng(seed)
    sizes = [(3, 4), (5, 2), (1, 1), (4, 4)]
    return [
        (h, w, _random_track(rng, h, w, int(rng.integers(1, 7))))
        for h, w in (sizes[int(rng.integers(len(sizes)))] for _ in range(12))
    ]


def _built(
    tracks: list[tuple[int, int, list[np.ndarray | None]]], needs_chunks: list[bool] | None = None
) -> list[track_masks.TrackMasks]:
    rles = [rle for _, _, frames in tracks for m in frames if m is not None for rle in encode_masks(m[None])]
    needs_chunks = needs_chunks or [True] * len(tracks)
    shapes = [
        TrackShape(h, w, np.array([m is not None for m in frames]), needs)
        for (h, w, frames), needs in zip(tracks, needs_chunks, strict=True)
    ]
    return build_track_masks(shapes, decode_rles(rles, str))


@pytest.mark.parametrize("max_pixels", [2**32 - 1, 16, 20, 33])
@pytest.mark.parametrize("seed", range(4))
def test_chunks_are_the_frames_side_by_side(
    seed: int, max_pixels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(track_masks, "MAX_RLE_PIXELS", max_pixels)
    tracks = _tracks(seed)
    needs_chunks = [bool(i % 3) for i in range(len(tracks))]  # some tracks want only their areas
    for (h, w, frames), needs, built in zip(tracks, needs_chunks, _built(tracks, needs_chunks), strict=True):
        dense = [np.zeros((h, w), dtype=bool) if m is None else m for m in frames]
        assert built.frame_areas.tolist() == [int(m.sum()) for m in dense]
        if not needs:
            assert built.chunks == [] and built.chunk_areas.size == 0
            continue
        per_chunk = max(1, max_pixels // (h * w))
        expected = [np.concatenate(dense[i : i + per_chunk], axis=1) for i in range(0, len(dense), per_chunk)]
        assert len(built.chunks) == len(expected)
        for chunk, want, area in zip(built.chunks, expected, built.chunk_areas, strict=True):
            assert np.array_equal(mask_utils.decode(chunk).astype(bool), want)
            assert area == want.sum()
            runs = decode_counts_string(chunk["counts"].decode(), "chunk")
            assert runs.sum() == want.size and (runs[1:-1] > 0).all()  # no empty runs inside


def test_no_tracks_or_none_wanting_chunks() -> None:
    assert _built([]) == []
    built = _built([(2, 2, [np.eye(2, dtype=bool), None])], [False])
    assert built[0].chunks == [] and built[0].frame_areas.tolist() == [2, 0]


def test_pycocotools_iou_of_tracks_is_the_spatio_temporal_iou() -> None:
    tracks = [t for t in _tracks(7) if (t[0], t[1]) == (4, 4)]
    tracks = [(h, w, frames[:3] + [None] * (3 - len(frames[:3]))) for h, w, frames in tracks]
    assert len(tracks) >= 2
    built = _built(tracks)
    iou = mask_utils.iou([b.chunks[0] for b in built], [b.chunks[0] for b in built], [0] * len(built))
    for i, (_, _, a) in enumerate(tracks):
        for j, (_, _, b) in enumerate(tracks):
            inter = sum(
                int((x & y).sum()) for x, y in zip(a, b, strict=True) if x is not None and y is not None
            )
            union = sum(
                int((x | y).sum()) if x is not None and y is not None else int((x if y is None else y).sum())
                for x, y in zip(a, b, strict=True)
                if x is not None or y is not None
            )
            assert iou[i, j] == pytest.approx(inter / union if union else 0.0, abs=1e-15)
