"""Local train/val splits: minvis.data.split, tools/data/split_dataset.py and their registration."""

import json
import os
import random
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from minvis.data import datasets_root, register_ytvis_instances
from minvis.data.split import num_val_videos, register_split, split_videos
from minvis.ytvis_format import YTVISFormatError

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "data" / "split_dataset.py"
split_main = runpy.run_path(str(TOOL))["main"]
CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]


def make_dataset(num_videos: int = 20) -> dict:
    """Videos 101.., two frames each; video i has 1 + i % 3 tracks."""
    videos, annotations = [], []
    for index in range(num_videos):
        video_id = 101 + index
        videos.append({
            "id": video_id, "file_names": [f"v{video_id}/0.jpg", f"v{video_id}/1.jpg"],
            "length": 2, "height": 4, "width": 6,
        })  # fmt: skip
        for _ in range(1 + index % 3):
            annotations.append({
                "id": len(annotations) + 1, "video_id": video_id, "category_id": 3, "iscrowd": 0,
                "segmentations": [None, None], "bboxes": [None, None], "areas": [None, None],
            })  # fmt: skip
    return {
        "info": {"description": "tiny"},
        "licenses": [{"id": 1}],
        "videos": videos,
        "categories": CATEGORIES,
        "annotations": annotations,
    }


def ids(items: list[dict]) -> list[int]:
    return [item["id"] for item in items]


def test_split_is_deterministic_and_depends_on_the_seed() -> None:
    data = make_dataset()
    assert split_videos(data, 0.1, seed=0) == split_videos(data, 0.1, seed=0)
    val_ids = {seed: ids(split_videos(data, 0.25, seed)[1]["videos"]) for seed in range(3)}
    assert len({tuple(v) for v in val_ids.values()}) > 1


def test_split_depends_on_the_video_ids_not_their_order() -> None:
    data = make_dataset()
    shuffled = {**data, "videos": random.Random(1).sample(data["videos"], len(data["videos"]))}
    assert set(ids(split_videos(shuffled, 0.3, 5)[1]["videos"])) == set(
        ids(split_videos(data, 0.3, 5)[1]["videos"])
    )


def test_videos_are_disjoint_complete_and_keep_their_order() -> None:
    data = make_dataset()
    train, val = split_videos(data, 0.1, seed=0)
    train_ids, val_ids = ids(train["videos"]), ids(val["videos"])
    assert len(val_ids) == 2 and len(train_ids) == 18
    assert set(train_ids).isdisjoint(val_ids)
    assert sorted(train_ids + val_ids) == ids(data["videos"])
    assert train_ids == sorted(train_ids) and val_ids == sorted(val_ids)


def test_annotations_follow_their_videos_and_other_keys_are_copied() -> None:
    data = make_dataset()
    train, val = split_videos(data, 0.3, seed=2)
    for subset in (train, val):
        assert {a["video_id"] for a in subset["annotations"]} == set(ids(subset["videos"]))
        assert subset["info"] == data["info"] and subset["licenses"] == data["licenses"]
        assert subset["categories"] == CATEGORIES
    assert sorted(ids(train["annotations"]) + ids(val["annotations"])) == ids(data["annotations"])


@pytest.mark.parametrize(
    ("num_videos", "fraction", "expected"),
    [(2, 0.1, 1), (5, 0.1, 1), (15, 0.1, 2), (14, 0.1, 1), (3, 0.5, 2), (4, 0.9, 3), (2238, 0.1, 224)],
)
def test_val_size_rounds_half_up_and_leaves_both_sides_non_empty(
    num_videos: int, fraction: float, expected: int
) -> None:
    assert num_val_videos(num_videos, fraction) == expected
    if num_videos <= 20:
        train, val = split_videos(make_dataset(num_videos), fraction, seed=0)
        assert (len(train["videos"]), len(val["videos"])) == (num_videos - expected, expected)


@pytest.mark.parametrize(("num_videos", "fraction"), [(1, 0.5), (0, 0.1), (10, 0.0), (10, 1.0), (10, -0.1)])
def test_impossible_splits_are_errors(num_videos: int, fraction: float) -> None:
    with pytest.raises(ValueError, match="val_fraction|cannot split"):
        split_videos(make_dataset(num_videos), fraction, seed=0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("annotations"), "no 'annotations' list"),
        (lambda d: d.pop("videos"), "no 'videos' list"),
        (lambda d: d["videos"][3].pop("id"), "video entry 3 has no integer 'id'"),
        (lambda d: d["videos"][4].update(id=101), r"duplicate video id\(s\) \[101\]"),
        (
            lambda d: d["annotations"][2].update(video_id=999),
            "annotation entry 2 refers to unknown video 999",
        ),
    ],
)
def test_malformed_datasets_are_format_errors(edit, message: str) -> None:
    data = make_dataset()
    edit(data)
    with pytest.raises(YTVISFormatError, match=message):
        split_videos(data, 0.1, seed=0)


# ---------------------------------------------------------------------------- the CLI


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def run_split(capsys, *args: str | Path) -> tuple[int, str, str]:
    try:
        code = split_main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_the_split_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    source = write_json(tmp_path / "train.json", make_dataset())
    out_dir = tmp_path / "splits"
    code, out, _ = run_split(capsys, "--json", source, "--out-dir", out_dir, "--seed", "3")
    assert code == 0
    train = json.loads((out_dir / "train.json").read_text())
    val = json.loads((out_dir / "val.json").read_text())
    assert (train, val) == split_videos(make_dataset(), 0.1, seed=3)
    assert f"{out_dir / 'val.json'}: 2 videos" in out

    before = (out_dir / "val.json").read_bytes()
    code, _, err = run_split(capsys, "--json", source, "--out-dir", out_dir, "--seed", "4")
    assert code == 2
    assert str(out_dir / "train.json") in err and "--overwrite" in err
    assert (out_dir / "val.json").read_bytes() == before

    code, _, _ = run_split(capsys, "--json", source, "--out-dir", out_dir, "--seed", "4", "--overwrite")
    assert code == 0
    val = json.loads((out_dir / "val.json").read_text())
    assert val == split_videos(make_dataset(), 0.1, seed=4)[1]


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, [], "cannot read {json}"),
        ("{not json", [], "{json}: invalid JSON"),
        ("[1, 2]", [], "{json}: expected a JSON object, got list"),
        ({**make_dataset(), "annotations": [{"id": 1, "video_id": 5}]}, [], "{json}: annotation entry 0"),
        (make_dataset(1), [], "{json}: cannot split 1 video"),
        (make_dataset(), ["--val-fraction", "1.5"], "--val-fraction must be in (0, 1)"),
    ],
)
def test_cli_errors_name_the_file(tmp_path: Path, capsys, content, extra: list[str], message: str) -> None:
    source = tmp_path / "in.json"
    if isinstance(content, str):
        source.write_text(content)
    elif content is not None:
        write_json(source, content)
    code, _, err = run_split(capsys, "--json", source, "--out-dir", tmp_path / "out", *extra)
    assert code == 2
    assert message.format(json=source) in err
    assert not (tmp_path / "out").exists()


def test_cli_reports_an_unwritable_out_dir(tmp_path: Path, capsys) -> None:
    source = write_json(tmp_path / "train.json", make_dataset())
    (tmp_path / "taken").write_text("a file, not a directory")
    code, _, err = run_split(capsys, "--json", source, "--out-dir", tmp_path / "taken")
    assert code == 2 and f"cannot create the folder {tmp_path / 'taken'}: File exists" in err


def test_cli_runs_as_a_script(tmp_path: Path) -> None:
    source = write_json(tmp_path / "train.json", make_dataset(30))
    command = [sys.executable, str(TOOL), "--json", str(source), "--out-dir", str(tmp_path / "s")]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((tmp_path / "s" / "val.json").read_text())["videos"]) == 3
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "already exist" in proc.stderr


# ---------------------------------------------------------------------------- registration


@pytest.mark.parametrize(
    ("dataset", "image_root"),
    [("ytvis_2019", "ytvis_2019/train/JPEGImages"), ("ytvis_2021", "ytvis_2021/train/JPEGImages"),
     ("ovis", "ovis/train")],
)  # fmt: skip
def test_builtin_splits_point_at_the_split_files_and_the_train_frames(dataset: str, image_root: str) -> None:
    root = datasets_root()
    train_meta = MetadataCatalog.get(f"{dataset}_train")
    for suffix, file_name in (("localtrain", "train.json"), ("localval", "val.json")):
        name = f"{dataset}_{suffix}"
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.json_file == os.path.join(root, dataset, "splits", file_name)
        assert meta.image_root == os.path.join(root, image_root) == train_meta.image_root
        assert meta.thing_classes == train_meta.thing_classes
        assert meta.thing_dataset_id_to_contiguous_id == train_meta.thing_dataset_id_to_contiguous_id
        assert meta.evaluator_type == "ytvis"


def test_register_split_of_a_custom_dataset_loads_the_split(tmp_path: Path, capsys) -> None:
    data = make_dataset(10)
    image_root = tmp_path / "JPEGImages"
    for video in data["videos"]:
        for file_name in video["file_names"]:
            (image_root / file_name).parent.mkdir(parents=True, exist_ok=True)
            (image_root / file_name).touch()
    source = write_json(tmp_path / "train.json", data)
    register_ytvis_instances("split_test_custom_train", {}, source, image_root)
    assert run_split(capsys, "--json", source, "--out-dir", tmp_path / "splits")[0] == 0

    names = register_split("split_test_custom", "split_test_custom_train", tmp_path / "splits", image_root)
    assert names == ["split_test_custom_localtrain", "split_test_custom_localval"]
    _, val = split_videos(data, 0.1, seed=0)
    videos = DatasetCatalog.get("split_test_custom_localval")
    assert [v["video_id"] for v in videos] == ids(val["videos"])
    first = val["videos"][0]["file_names"][0]
    assert videos[0]["file_names"][0] == os.path.join(image_root, first)
    assert MetadataCatalog.get("split_test_custom_localval").thing_classes == ["cat", "dog"]
    assert len(DatasetCatalog.get("split_test_custom_localtrain")) == 9


def test_register_split_of_an_unknown_dataset_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="split_test_absent_train"):
        register_split("split_test_absent", "split_test_absent_train", tmp_path, tmp_path)
