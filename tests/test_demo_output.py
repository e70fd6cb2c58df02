"""What the demo shows and writes, on a real clip with a trained model.

The first frames of vtest.avi (576x768, resized to the config's test size for the model)
through demo/demo.py with the weights of the tiny training run (``tiny_run``), every
track shown. Reference: the same frames through ``VideoPredictor`` in this process. The
saved annotated frames (jpg) must be the input where nothing is drawn and the drawing of
the predictor's tracks where something is (up to jpg noise); results.json must hold the
predictor's tracks.
"""

import itertools
import json

import cv2
import numpy as np
import pytest
from conftest import REPO, TINY_CONFIG, run_tiny
from pycocotools import mask as mask_utils

from minvis.config import build_config
from minvis.data.video_io import open_frame_source
from minvis.predictor import VideoPredictor
from minvis.visualization import draw_instances

VTEST = REPO.parent / "shared" / "data" / "vtest.avi"
NUM_FRAMES = 12
JPEG_NOISE = 3.0  # mean absolute difference a jpg re-encoding leaves (0-255 scale)
DRAWN_CHANGE = 10.0  # mean absolute difference of drawn pixels from the input
NEAR_DRAWING = 9  # pixels around a drawing that jpg ringing may touch
MIN_MASK_IOU = 0.999


@pytest.fixture(scope="module")
def demo_run(tiny_datasets, tiny_run, tmp_path_factory):
    output = tmp_path_factory.mktemp("demo")
    weights = tiny_run / "model_final.pth"
    done = run_tiny(
        REPO / "demo" / "demo.py", tiny_datasets,
        "--input", VTEST, "--output", output, "--max-frames", NUM_FRAMES, "--save-frames",
        "--confidence-threshold", 0, "--opts", "MODEL.WEIGHTS", weights,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    cfg = build_config(str(TINY_CONFIG), ["MODEL.WEIGHTS", str(weights)])
    predictor = VideoPredictor.from_config(cfg, score_threshold=0.0)
    frames = list(itertools.islice(open_frame_source(VTEST), NUM_FRAMES))
    return output, predictor, frames, list(predictor(frames))


def test_annotated_frames_show_the_tracks_and_only_them(demo_run):
    output, predictor, frames, tracked = demo_run
    assert sum(len(t.track_ids) for t in tracked) > 0  # the model tracks something on the clip
    video_frames = [f.astype(np.float32) for f in open_frame_source(output / "annotated.mp4")]  # RGB
    assert len(video_frames) == NUM_FRAMES
    for index, (frame, instances) in enumerate(zip(frames, tracked, strict=True)):
        saved = cv2.imread(str(output / "frames" / f"{index:05d}.jpg"))[:, :, ::-1].astype(np.float32)
        expected = draw_instances(frame, instances, predictor.class_names)
        drawn = (expected != frame).any(axis=2)  # [H, W]
        assert np.abs(saved - expected).mean() < JPEG_NOISE, index
        near = cv2.dilate(drawn.astype(np.uint8), np.ones((2 * NEAR_DRAWING + 1,) * 2, np.uint8)) > 0
        difference = np.abs(saved - frame).mean(axis=2)  # [H, W]
        assert difference[~near].mean() < JPEG_NOISE, index
        if len(instances.track_ids):
            assert drawn.any() and difference[drawn].mean() > DRAWN_CHANGE, index
            # The video (lossy mp4) shows the drawing too: nearer to it than to the input.
            shown = video_frames[index]
            assert np.abs(shown - expected)[drawn].mean() < np.abs(shown - frame)[drawn].mean() / 2, index


def test_results_file_holds_the_predictors_tracks(demo_run):
    output, predictor, frames, tracked = demo_run
    entries = json.loads((output / "results.json").read_text())
    tracks = sorted({int(t) for instances in tracked for t in instances.track_ids})
    assert len(entries) == len(tracks) > 0
    for track, entry in zip(tracks, entries, strict=True):  # one entry per track, in track order
        seen = [  # (frame, row) where the track is reported
            (i, ids.index(track))
            for i, ids in enumerate(x.track_ids.tolist() for x in tracked)
            if track in ids
        ]
        last_frame, last_row = seen[-1]
        assert entry["category_id"] == predictor.category_ids[int(tracked[last_frame].labels[last_row])]
        assert entry["score"] == pytest.approx(float(tracked[last_frame].scores[last_row]), abs=1e-6)
        assert len(entry["segmentations"]) == NUM_FRAMES
        rows = dict(seen)
        for index, rle in enumerate(entry["segmentations"]):
            mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
            if index in rows:  # the demo runs on one thread: float noise may flip a boundary pixel
                reference = tracked[index].masks[rows[index]].numpy()
                assert (mask & reference).sum() / (mask | reference).sum() >= MIN_MASK_IOU, index
            else:
                assert not mask.any()  # not reported on that frame: an all-zero RLE
