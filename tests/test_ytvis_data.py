"""Loading YouTube-VIS-format JSON, its errors, and the builtin dataset registrations."""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from minvis.data import YTVISFormatError, load_ytvis_json, register_ytvis_instances
from minvis.data.builtin import OVIS_CATEGORIES, YTVIS_2019_CATEGORIES, YTVIS_2021_CATEGORIES

H, W = 6, 8
MASK = np.zeros((H, W), dtype=np.uint8)
MASK[1:4, 2:6] = 1
COMPRESSED = mask_util.encode(np.asfortranarray(MASK))
COMPRESSED = {"size": [H, W], "counts": COMPRESSED["counts"].decode()}
# Column-major runs of MASK: 13 zeros, then in columns 2..5 three ones between three zeros.
UNCOMPRESSED = {"size": [H, W], "counts": [13, 3, 3, 3, 3, 3, 3, 3, 14]}
POLYGON = [[2.0, 1.0, 6.0, 1.0, 6.0, 4.0, 2.0, 4.0], [0.0, 0.0, 1.0, 1.0]]  # 2nd: < 3 points


def _dataset() -> dict:
    return {
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "videos": [
            {"id": 9, "file_names": ["b/0.jpg", "b/1.jpg"], "length": 2, "height": H, "width": W},
            {"id": 4, "file_names": [f"a/{i}.jpg" for i in range(3)], "length": 3, "height": H, "width": W},
        ],
        "annotations": [
            {
                "id": 1, "video_id": 4, "category_id": 7, "iscrowd": 0,
                "segmentations": [COMPRESSED, None, UNCOMPRESSED],
                "bboxes": [[2, 1, 4, 3], None, [2, 1, 4, 3]],
            },
            {"id": 2, "video_id": 4, "category_id": 3, "segmentations": [None, POLYGON, None]},
            {"id": 3, "video_id": 9, "category_id": 3, "iscrowd": 1, "segmentations": [[], None]},
        ],
    }  # fmt: skip


def _write(tmp_path, data: dict, frames: bool = True) -> tuple[str, str]:
    root = tmp_path / "JPEGImages"
    if frames:
        for video in data["videos"]:
            for name in video["file_names"]:
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(b"")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return str(path), str(root)


def test_loads_videos_sorted_with_contiguous_categories_and_all_segmentation_forms(tmp_path):
    json_file, root = _write(tmp_path, _dataset())
    videos = load_ytvis_json(json_file, root)
    assert [v["video_id"] for v in videos] == [4, 9]
    video = videos[0]
    assert video["file_names"] == [os.path.join(root, f"a/{i}.jpg") for i in range(3)]
    assert (video["height"], video["width"], video["length"]) == (H, W, 3)
    assert [[a["id"] for a in frame] for frame in video["annotations"]] == [[1], [2], [1]]
    first, polygon, uncompressed = (frame[0] for frame in video["annotations"])
    assert first["category_id"] == 1 and polygon["category_id"] == 0  # ids 3, 7 -> 0, 1
    assert first["bbox"] == [2, 1, 4, 3] and first["bbox_mode"] == BoxMode.XYWH_ABS
    assert polygon["bbox"] == [2.0, 1.0, 4.0, 3.0]  # computed, as the file has no bboxes
    assert polygon["segmentation"] == [POLYGON[0]]
    for anno in (first, uncompressed):
        assert isinstance(anno["segmentation"]["counts"], bytes | str)
        assert np.array_equal(mask_util.decode(anno["segmentation"]), MASK)
    # The crowd track has an empty polygon list and a null: present in no frame.
    assert videos[1]["annotations"] == [[], []]


def test_test_split_without_annotations_and_extra_keys(tmp_path):
    data = _dataset()
    data["annotations"][0]["areas"] = [12, None, 12]
    json_file, root = _write(tmp_path, data)
    video = load_ytvis_json(json_file, root, extra_annotation_keys=["areas"])[0]
    assert video["annotations"][0][0]["areas"] == [12, None, 12]
    data["annotations"] = None
    json_file, root = _write(tmp_path, data)
    assert [v["annotations"] for v in load_ytvis_json(json_file, root)] == [[[]] * 3, [[]] * 2]


def test_registered_custom_dataset_takes_classes_from_the_json(tmp_path):
    json_file, root = _write(tmp_path, _dataset())
    register_ytvis_instances("test_ytvis_custom", {}, json_file, root)
    meta = MetadataCatalog.get("test_ytvis_custom")
    assert (meta.evaluator_type, meta.json_file, meta.image_root) == ("ytvis", json_file, root)
    assert len(DatasetCatalog.get("test_ytvis_custom")) == 2
    assert meta.thing_classes == ["cat", "dog"]
    assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1}


def _error(tmp_path, data: dict, frames: bool = True) -> str:
    json_file, root = _write(tmp_path, data, frames)
    with pytest.raises(YTVISFormatError) as info:
        load_ytvis_json(json_file, root)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_missing_frame_names_video_and_frame(tmp_path):
    json_file, root = _write(tmp_path, _dataset())
    os.remove(os.path.join(root, "a/1.jpg"))
    with pytest.raises(YTVISFormatError, match=r"video 4 frame 1: image file .*a/1\.jpg does not exist"):
        load_ytvis_json(json_file, root)
    assert len(load_ytvis_json(json_file, root, check_files=False)) == 2


def test_segmentation_count_differs_from_length(tmp_path):
    data = _dataset()
    data["annotations"][1]["segmentations"] = [None, POLYGON]
    assert "video 4 annotation 2: 2 segmentations for a video of 3 frames" in _error(tmp_path, data)


def test_unknown_category(tmp_path):
    data = _dataset()
    data["annotations"][0]["category_id"] = 5
    assert "video 4 annotation 1: unknown category_id 5" in _error(tmp_path, data)


def test_rle_of_the_wrong_size_names_the_frame(tmp_path):
    data = _dataset()
    bad = copy.deepcopy(UNCOMPRESSED)
    bad["size"] = [W, H]
    data["annotations"][0]["segmentations"][2] = bad
    assert "video 4 annotation 1 frame 2: RLE size [8, 6]" in _error(tmp_path, data)


def test_uncompressed_rle_not_covering_the_frame(tmp_path):
    data = _dataset()
    data["annotations"][0]["segmentations"][2] = {"size": [H, W], "counts": [13, 3, 3]}
    assert "video 4 annotation 1 frame 2: RLE runs add up to 19 pixels, not 6 x 8" in _error(tmp_path, data)


def test_compressed_rle_not_covering_the_frame(tmp_path):
    # pycocotools would read past the mask (and can spin for ever): refused before it runs.
    data = _dataset()
    data["annotations"][0]["segmentations"][2] = {"size": [H, W], "counts": "0i0"}
    assert "video 4 annotation 1 frame 2: RLE runs add up to 25 pixels" in _error(tmp_path, data)


def test_missing_or_binary_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_ytvis_json("no/such/train.json", tmp_path)
    message = str(info.value)
    assert str(tmp_path.cwd() / "no" / "such" / "train.json") in message
    assert "DETECTRON2_DATASETS" in message and "make_synthetic_ytvis.py" in message
    binary = tmp_path / "train.json"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(YTVISFormatError, match=f"{binary}: not a JSON text file"):
        load_ytvis_json(binary, tmp_path)


def test_inconsistent_video_and_unknown_video(tmp_path):
    data = _dataset()
    data["videos"][1]["length"] = 4
    assert "video 4: 3 file_names but length 4" in _error(tmp_path, data)
    data = _dataset()
    data["annotations"][2]["video_id"] = 99
    assert "annotation 3 refers to unknown video 99" in _error(tmp_path, data)


def test_category_tables_match_the_official_sizes():
    assert len(YTVIS_2019_CATEGORIES) == len(YTVIS_2021_CATEGORIES) == 40
    assert len(OVIS_CATEGORIES) == 25
    assert YTVIS_2019_CATEGORIES[0] == {"id": 1, "name": "person", "color": [220, 20, 60]}
    assert YTVIS_2021_CATEGORIES[-1]["name"] == "zebra" and OVIS_CATEGORIES[-1]["name"] == "Vehical"
    meta = MetadataCatalog.get("ovis_val")
    assert meta.thing_classes[:3] == ["Person", "Bird", "Cat"]
    assert meta.thing_dataset_id_to_contiguous_id == {i: i - 1 for i in range(1, 26)}


_PRINT_REGISTERED = """
import json, minvis.data
from detectron2.data import DatasetCatalog, MetadataCatalog
names = [n for n in DatasetCatalog.list() if n.startswith(("ytvis_", "ovis_", "synthetic_ytvis_"))]
print(json.dumps({n: [MetadataCatalog.get(n).image_root, MetadataCatalog.get(n).json_file] for n in names}))
try:
    DatasetCatalog.get("ytvis_2019_train")
except FileNotFoundError:
    print("lazy")
"""


def test_builtin_names_and_paths_under_detectron2_datasets(tmp_path):
    root = tmp_path / "no_such_dir"  # registration must not touch it
    env = {**os.environ, "DETECTRON2_DATASETS": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", _PRINT_REGISTERED], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    registered = json.loads(out[0])
    expected = {}
    for year in ("2019", "2021"):
        for split, folder in (("train", "train"), ("val", "valid"), ("test", "test")):
            expected[f"ytvis_{year}_{split}"] = [
                f"ytvis_{year}/{folder}/JPEGImages",
                f"ytvis_{year}/{folder}.json",
            ]
    for split, folder in (("train", "train"), ("val", "valid"), ("test", "test")):
        expected[f"ovis_{split}"] = [f"ovis/{folder}", f"ovis/annotations/annotations_{folder}.json"]
    for split in ("train", "val"):
        expected[f"synthetic_ytvis_{split}"] = [
            f"synthetic_ytvis/{split}/JPEGImages",
            f"synthetic_ytvis/{split}.json",
        ]
    assert {n: registered.get(n) for n in expected} == {
        n: [os.path.join(root, p) for p in paths] for n, paths in expected.items()
    }
    assert out[1] == "lazy" and not root.exists()
