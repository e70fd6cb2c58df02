"""The synthetic dataset: deterministic, valid YouTube-VIS, and actually hard to track."""

import json
import runpy
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from minvis.data import load_ytvis_json
from minvis.data.synthetic import SyntheticSpec, render_video, video_rng, write_split

TOOL = Path(__file__).resolve().parents[1] / "tools" / "data" / "make_synthetic_ytvis.py"
SPEC = SyntheticSpec(num_frames=8, height=48, width=64)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_videos_independent_of_their_number(tmp_path):
    write_split(tmp_path / "a", "train", 3, SPEC, seed=5)
    write_split(tmp_path / "b", "train", 3, SPEC, seed=5)
    write_split(tmp_path / "c", "train", 4, SPEC, seed=6)
    write_split(tmp_path / "d", "train", 2, SPEC, seed=5)
    a = _files(tmp_path / "a")
    assert a == _files(tmp_path / "b")
    assert a["train.json"] != _files(tmp_path / "c")["train.json"]
    d = _files(tmp_path / "d")
    assert all(a[name] == data for name, data in d.items() if name.endswith(".jpg"))
    assert len(a) == 1 + 3 * SPEC.num_frames


@pytest.mark.parametrize("rle", ["uncompressed", "compressed"])
def test_json_loads_and_matches_the_rendered_masks(tmp_path, rle):
    spec = SyntheticSpec(num_frames=8, height=48, width=64, rle=rle)
    json_path = write_split(tmp_path, "val", 3, spec, seed=1)
    data = json.loads(json_path.read_text())
    assert [c["name"] for c in data["categories"]] == ["circle", "square", "triangle", "star"]
    rles = [s for a in data["annotations"] for s in a["segmentations"] if s]
    assert all(isinstance(s["counts"], list if rle == "uncompressed" else str) for s in rles)
    videos = load_ytvis_json(json_path, tmp_path / "val" / "JPEGImages")
    assert [(v["length"], v["height"], v["width"]) for v in videos] == [(8, 48, 64)] * 3
    for index, video in enumerate(videos):
        rendered = render_video(video_rng(1, "val", index), spec)
        image = cv2.imread(video["file_names"][3])[:, :, ::-1]
        assert np.abs(image.astype(int) - rendered.frames[3]).mean() < 15  # JPEG of noise
        tracks = [k for k, masks in enumerate(rendered.visible_masks) if masks.any()]
        for frame, annos in enumerate(video["annotations"]):
            expected = {k for k in tracks if rendered.visible_masks[k, frame].any()}
            assert len(annos) == len(expected)
            for anno in annos:
                k = tracks[
                    [a["id"] for a in data["annotations"] if a["video_id"] == index + 1].index(anno["id"])
                ]
                assert anno["category_id"] == rendered.category_ids[k] - 1
                assert np.array_equal(
                    mask_util.decode(anno["segmentation"]), rendered.visible_masks[k, frame]
                )


def _has_gap(present: np.ndarray) -> bool:
    """Present, then absent, then present again."""
    frames = np.flatnonzero(present)
    return len(frames) > 0 and not present[frames[0] : frames[-1] + 1].all()


def test_objects_occlude_leave_and_reenter():
    spec = SyntheticSpec()
    videos = [render_video(video_rng(0, "train", i), spec) for i in range(8)]
    occluded = [v.amodal_masks & ~v.visible_masks for v in videos]
    assert sum(o.any(axis=(2, 3)).sum() for o in occluded) >= 10  # object-frames partly hidden
    in_frame = [v.amodal_masks.any(axis=(2, 3)) for v in videos]  # (objects, frames)
    assert sum(_has_gap(track) for tracks in in_frame for track in tracks) >= 2
    assert sum(len(v.category_ids) for v in videos) >= 16
    assert len({c for v in videos for c in v.category_ids}) == 4


def test_tool_writes_splits_and_a_video_quickly_and_refuses_to_overwrite(tmp_path, capsys):
    main = runpy.run_path(str(TOOL))["main"]
    root, video = tmp_path / "syn", tmp_path / "demo" / "synthetic.mp4"
    args = [
        "--root",
        str(root),
        "--splits",
        "train=40",
        "val=2",
        "--video-out",
        str(video),
        "--video-frames",
        "20",
    ]
    assert main(args) == 0
    assert len(json.loads((root / "train.json").read_text())["videos"]) == 40
    assert len(list((root / "val" / "JPEGImages").rglob("*.jpg"))) == 2 * 12
    capture = cv2.VideoCapture(str(video))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 20
    assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 160
    capture.release()
    with pytest.raises(SystemExit):
        main(["--root", str(root), "--splits", "val=1"])
    assert main(["--root", str(root), "--splits", "val=1", "--overwrite"]) == 0
    assert len(list((root / "val" / "JPEGImages").rglob("*.jpg"))) == 12
