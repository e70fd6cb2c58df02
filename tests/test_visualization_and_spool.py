"""Drawing tracked instances, and per-track submission entries from a stream of frames."""

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util

from minvis.evaluation.track_spool import TrackSpool
from minvis.tracking import FrameInstances
from minvis.visualization import draw_instances, track_color
from minvis.ytvis_format import validate_result_entry


def frame_instances(index: int, tracks: list[int], labels: list[int], masks: np.ndarray) -> FrameInstances:
    return FrameInstances(
        frame_index=index,
        track_ids=torch.tensor(tracks, dtype=torch.long),
        labels=torch.tensor(labels, dtype=torch.long),
        scores=torch.linspace(0.9, 0.6, len(tracks)),
        masks=torch.from_numpy(masks),
    )


def square(top: int, left: int, size: int = 10, shape: tuple[int, int] = (40, 60)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_drawing_colours_only_the_masks():
    frame = np.full((40, 60, 3), 100, dtype=np.uint8)
    masks = np.stack([square(20, 5), square(20, 40)])
    drawn = draw_instances(frame, frame_instances(0, [3, 7], [0, 1], masks), ["a", "b"])
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8
    inside = drawn[25, 45].astype(int)  # centre of track 7's square, away from outlines and labels
    expected = (100 * 0.5 + np.array(track_color(7)) * 0.5).astype(int)
    assert np.abs(inside - expected).max() <= 1
    np.testing.assert_array_equal(drawn[38, 25], frame[38, 25])  # no mask there
    assert track_color(7) == track_color(7) != track_color(3)
    nothing = frame_instances(1, [], [], np.zeros((0, 40, 60), dtype=bool))
    np.testing.assert_array_equal(draw_instances(frame, nothing, ["a", "b"]), frame)


def test_spool_writes_one_entry_per_track_with_all_zero_rles_where_absent():
    with TrackSpool() as spool:
        spool.add(frame_instances(0, [2], [1], square(0, 0)[None]))
        spool.add(frame_instances(1, [], [], np.zeros((0, 40, 60), dtype=bool)))
        spool.add(frame_instances(2, [2, 5], [3, 0], np.stack([square(5, 5), square(20, 30)])))
        with pytest.raises(ValueError, match="expected frame 3, got frame 5"):
            spool.add(frame_instances(5, [], [], np.zeros((0, 40, 60), dtype=bool)))
        entries = list(spool.entries(video_id=4, category_ids=[10, 20, 30, 40]))
    assert [e["category_id"] for e in entries] == [40, 10]  # track 2 ends as class 3, track 5 is class 0
    for index, entry in enumerate(entries):
        validate_result_entry(entry, index)
        assert entry["video_id"] == 4
    track2, track5 = (e["segmentations"] for e in entries)
    empty = np.zeros((40, 60), dtype=bool)
    for absent in (track2[1], *track5[:2]):  # an all-zero RLE (official format), never null
        assert absent["size"] == [40, 60]
        assert mask_util.decode(absent).astype(bool).tolist() == empty.tolist()
    assert mask_util.decode(track5[2]).astype(bool).tolist() == square(20, 30).tolist()
