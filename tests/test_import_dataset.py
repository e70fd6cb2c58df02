"""Your own data (issue 23): tools/data/import_dataset.py (vos, coco-video), the registration of
imported sets through MINVIS_DATASETS, sparse annotation, and train/evaluate from the CLI."""

from __future__ import annotations

import copy
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

from minvis.data.custom import load_imported_dataset, parse_dataset_specs
from minvis.data.ytvis import load_ytvis_json
from minvis.evaluation.ytvis_metric import evaluate_ytvis
from minvis.ytvis_format import YTVISFormatError

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "data" / "import_dataset.py"
VTEST = REPO.parent / "shared" / "data" / "vtest.avi"
TINY_CONFIG = REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"
import_main = runpy.run_path(str(TOOL))["main"]

W, H = 96, 72
Box = tuple[int, int, int, int] | None  # x, y, w, h
# The objects drawn into the annotation PNGs: video -> object id -> box per frame.
OBJECTS: dict[str, dict[int, list[Box]]] = {
    "cross": {
        1: [(5, 5, 20, 10), (5, 8, 20, 10), (5, 11, 20, 10), None],
        3: [(50, 30, 30, 30), (51, 30, 30, 30), (52, 30, 30, 30), None],  # frame 3: nothing
    },
    "walk": {
        1: [(10 + 4 * t, 20, 12, 16) for t in range(6)],
        2: [(60, 40, 8, 10), (60, 38, 8, 10), (60, 36, 8, 10), (60, 34, 3, 3), None, None],
    },
}
FIRST_FRAME = {"cross": 100, "walk": 0}  # where each video starts in vtest.avi
UNANNOTATED = {"walk": [2]}  # frames without an annotation PNG
CLASSES = {"*": {"1": "person", "2": "bag"}, "cross": {"3": "car"}}


def rle(box: Box) -> dict[str, Any] | None:
    if box is None:
        return None
    x, y, w, h = box
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[y : y + h, x : x + w] = 1
    encoded = mask_util.encode(np.asfortranarray(mask))
    return {"size": [H, W], "counts": encoded["counts"].decode("ascii")}


def track(ann_id: int, video_id: int, category_id: int, boxes: list[Box]) -> dict[str, Any]:
    return {
        "id": ann_id,
        "video_id": video_id,
        "category_id": category_id,
        "iscrowd": 0,
        "segmentations": [rle(b) for b in boxes],
        "areas": [b[2] * b[3] if b else None for b in boxes],
        "bboxes": [[float(v) for v in b] if b else None for b in boxes],
    }


EXPECTED = {
    "videos": [
        {
            "id": 1, "width": W, "height": H, "length": 4,
            "file_names": ["cross/00000.jpg", "cross/00001.jpg", "cross/00002.jpg", "cross/00003.jpg"],
        },
        {
            "id": 2, "width": W, "height": H, "length": 6,
            "file_names": ["walk/00000.jpg", "walk/00001.jpg", "walk/00002.jpg", "walk/00003.jpg",
                           "walk/00004.jpg", "walk/00005.jpg"],
            "annotated_frames": [0, 1, 3, 4, 5],
        },
    ],
    "categories": [
        {"id": 1, "name": "person", "supercategory": "object", "color": [242, 154, 73]},
        {"id": 2, "name": "bag", "supercategory": "object", "color": [105, 73, 242]},
        {"id": 3, "name": "car", "supercategory": "object", "color": [90, 242, 73]},
    ],
    "annotations": [
        track(1, 1, 1, [(5, 5, 20, 10), (5, 8, 20, 10), (5, 11, 20, 10), None]),
        track(2, 1, 3, [(50, 30, 30, 30), (51, 30, 30, 30), (52, 30, 30, 30), None]),
        track(3, 2, 1, [(10, 20, 12, 16), (14, 20, 12, 16), None, (22, 20, 12, 16), (26, 20, 12, 16),
                        (30, 20, 12, 16)]),
        track(4, 2, 2, [(60, 40, 8, 10), (60, 38, 8, 10), None, (60, 34, 3, 3), None, None]),
    ],
}  # fmt: skip


def video_frames(first: int, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(VTEST))
    capture.set(cv2.CAP_PROP_POS_FRAMES, first)
    frames = []
    for _ in range(count):
        ok, frame = capture.read()
        assert ok, f"cannot read frame {first + len(frames)} of {VTEST}"
        frames.append(cv2.resize(frame, (W, H), interpolation=cv2.INTER_AREA))
    capture.release()
    return frames


def palette_png(objects: dict[int, list[Box]], t: int) -> Image.Image:
    ids = np.zeros((H, W), dtype=np.uint8)
    ids[0, :] = 255  # DAVIS void: background
    for object_id, boxes in objects.items():
        if boxes[t] is not None:
            x, y, w, h = boxes[t]
            ids[y : y + h, x : x + w] = object_id
    image = Image.fromarray(ids, mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [255] * (256 * 3 - 12))
    return image


def write_vos(root: Path, level: str = "") -> tuple[Path, Path]:
    """``root/JPEGImages[/level]/<video>/*.jpg`` from vtest.avi and palette PNGs; (root, classes)."""
    for video, objects in OBJECTS.items():
        length = len(next(iter(objects.values())))
        frame_dir = root / "JPEGImages" / level / video
        png_dir = root / "Annotations" / level / video
        frame_dir.mkdir(parents=True)
        png_dir.mkdir(parents=True)
        for t, frame in enumerate(video_frames(FIRST_FRAME[video], length)):
            cv2.imwrite(str(frame_dir / f"{t:05d}.jpg"), frame)
            if t not in UNANNOTATED.get(video, []):
                palette_png(objects, t).save(png_dir / f"{t:05d}.png")
    classes = root / "classes.json"
    classes.write_text(json.dumps(CLASSES))
    return root, classes


@pytest.fixture(scope="module")
def vos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_vos(tmp_path_factory.mktemp("vos"))


def uncompressed(box: Box) -> dict[str, Any]:
    """Uncompressed RLE (column-major runs, starting with zeros) of a box."""
    x, y, w, h = box  # type: ignore[misc]
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[y : y + h, x : x + w] = 1
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": [H, W], "counts": np.diff(np.concatenate([[0], changes])).tolist()}


def coco_video_json(root: Path) -> Path:
    """The same annotations as COCO-style frames: cross by frame_id with polygons and integer
    track ids, walk by file-name order with RLE and attributes.track_id."""
    images, annotations = [], []
    source_category = {1: 7, 2: 9, 3: 12}  # person, bag, car under other ids
    for v, (video, objects) in enumerate(OBJECTS.items(), start=1):
        length = len(next(iter(objects.values())))
        for t in reversed(range(length)):  # listed out of order
            image = {
                "id": 100 * v + t,
                "file_name": f"{video}/{t:05d}.jpg",
                "width": W,
                "height": H,
                "video_id": v,
            }
            if video == "cross":
                image["frame_id"] = t
            images.append(image)
            if t in UNANNOTATED.get(video, []):
                continue  # a listed frame without objects
            for object_id, boxes in objects.items():
                box = boxes[t]
                if box is None:
                    continue
                x, y, w, h = box
                ann: dict[str, Any] = {"id": len(annotations) + 1, "image_id": 100 * v + t}
                ann["category_id"] = source_category[object_id]
                if video == "cross":
                    ann.update(track_id=object_id, segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]])
                else:
                    segm = rle(box) if t == 0 else uncompressed(box)
                    ann.update(attributes={"track_id": f"obj{object_id}"}, segmentation=segm, iscrowd=0)
                annotations.append(ann)
    categories = [{"id": 12, "name": "car"}, {"id": 9, "name": "bag"}, {"id": 7, "name": "person"}]
    path = root / "coco_video.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def run_import(*args: object, capsys: pytest.CaptureFixture[str] | None = None) -> tuple[int, str, str]:
    code = import_main([str(a) for a in args])
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


def without_info(dataset: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dataset.items() if k != "info"}


# --------------------------------------------------------------------------- imports
def test_vos_import_matches_the_expected_json(vos, tmp_path, capsys) -> None:
    root, classes = vos
    out = tmp_path / "out" / "train.json"
    code, stdout, _ = run_import("vos", "--root", root, "--classes", classes, "--out", out, capsys=capsys)
    assert code == 0
    assert without_info(json.loads(out.read_text())) == EXPECTED
    assert f"image root: {root / 'JPEGImages'}" in stdout
    assert not list(out.parent.glob("*.partial*"))


def test_davis_level_folders(tmp_path, capsys) -> None:
    root, classes = write_vos(tmp_path / "DAVIS", level="480p")
    out = tmp_path / "davis.json"
    assert run_import("vos", "--root", root, "--classes", classes, "--out", out, capsys=capsys)[0] == 0
    assert without_info(json.loads(out.read_text())) == EXPECTED


def test_video_list_and_youtube_vos_meta(vos, tmp_path, capsys) -> None:
    root, _ = vos
    meta = tmp_path / "meta.json"  # YouTube-VOS's meta.json names the objects' categories
    meta.write_text(
        json.dumps(
            {
                "videos": {
                    "cross": {
                        "objects": {
                            "1": {"category": "person", "frames": []},
                            "3": {"category": "car", "frames": []},
                        }
                    }
                }
            }
        )
    )
    videos = tmp_path / "val.txt"
    videos.write_text("cross\n")
    out = tmp_path / "val.json"
    args = ("vos", "--root", root, "--classes", meta, "--videos", videos, "--out", out)
    assert run_import(*args, capsys=capsys)[0] == 0
    dataset = json.loads(out.read_text())
    assert [c["name"] for c in dataset["categories"]] == ["person", "car"]
    assert dataset["videos"] == EXPECTED["videos"][:1]
    assert [a["category_id"] for a in dataset["annotations"]] == [1, 2]
    assert [a["segmentations"] for a in dataset["annotations"]] == [
        a["segmentations"] for a in EXPECTED["annotations"][:2]
    ]  # fmt: skip


def test_coco_video_import_matches_the_expected_json(vos, tmp_path, capsys) -> None:
    root, _ = vos
    source = coco_video_json(tmp_path)
    out = tmp_path / "coco.json"
    args = ("coco-video", "--json", source, "--images", root / "JPEGImages", "--out", out)
    assert run_import(*args, capsys=capsys)[0] == 0
    expected = copy.deepcopy(EXPECTED)
    del expected["videos"][1]["annotated_frames"]  # every listed image is an annotated frame
    assert without_info(json.loads(out.read_text())) == expected


def test_summary_and_the_command_line(vos, tmp_path) -> None:
    root, classes = vos
    out = tmp_path / "train.json"
    command = [sys.executable, TOOL, "vos", "--root", root, "--classes", classes, "--out", out, "--small", 10]
    proc = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1:9] == [
        "videos: 2",
        "frames: 10, annotated: 9 (90.0%)",
        "annotated frames without any object: 1",
        "frames with a mask smaller than 10 pixels: 1",
        "category  tracks  instances",
        "person         2          8",
        "bag            1          3",
        "car            1          3",
    ]
    assert (
        lines[9]
        == f'register it: MINVIS_DATASETS="NAME={out}:{root / "JPEGImages"}" (see datasets/README.md)'
    )


# --------------------------------------------------------------------------- bad input
def one_error(code: int, err: str) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("import_dataset: error: ")
    return lines[0].removeprefix("import_dataset: error: ")


@pytest.fixture
def vos_copy(vos, tmp_path) -> tuple[Path, Path]:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(vos[0], root)
    return root, root / "classes.json"


def test_object_id_missing_from_the_class_map(vos_copy, tmp_path, capsys) -> None:
    root, classes = vos_copy
    classes.write_text(json.dumps({"*": {"1": "person", "2": "bag"}}))
    code, _, err = run_import(
        "vos", "--root", root, "--classes", classes, "--out", tmp_path / "o.json", capsys=capsys
    )
    png = root / "Annotations" / "cross" / "00000.png"
    assert one_error(code, err).startswith(f"{png}: object id 3 is not in the class map {classes}")
    assert not (tmp_path / "o.json").exists()


def test_frames_of_different_sizes(vos_copy, tmp_path, capsys) -> None:
    root, classes = vos_copy
    frame = root / "JPEGImages" / "walk" / "00004.jpg"
    cv2.imwrite(str(frame), np.zeros((H, W + 4, 3), dtype=np.uint8))
    code, _, err = run_import(
        "vos", "--root", root, "--classes", classes, "--out", tmp_path / "o.json", capsys=capsys
    )
    assert one_error(code, err) == (
        f"{frame}: 100x72 (WxH) but 00000.jpg is 96x72; all frames of a video must have one size"
    )


def test_annotation_png_that_is_not_indexed(vos_copy, tmp_path, capsys) -> None:
    root, classes = vos_copy
    png = root / "Annotations" / "walk" / "00001.png"
    Image.open(png).convert("L").save(png)
    code, _, err = run_import(
        "vos", "--root", root, "--classes", classes, "--out", tmp_path / "o.json", capsys=capsys
    )
    assert one_error(code, err).startswith(f"{png}: not an indexed PNG (mode L)")


@pytest.mark.parametrize(
    "broken", ["Annotations/walk/00003.png", "JPEGImages/cross/00002.jpg", "classes.json"]
)
def test_unreadable_files(vos_copy, tmp_path, capsys, broken: str) -> None:
    root, classes = vos_copy
    (root / broken).write_bytes(b"\x00not an image or json")
    code, _, err = run_import(
        "vos", "--root", root, "--classes", classes, "--out", tmp_path / "o.json", capsys=capsys
    )
    message = one_error(code, err)
    assert message.startswith(f"{root / broken}: ")
    assert ("invalid JSON" if broken.endswith(".json") else "cannot read the image") in message


def test_duplicate_track_ids_within_a_frame(vos, tmp_path, capsys) -> None:
    source = coco_video_json(tmp_path)
    data = json.loads(source.read_text())
    data["annotations"].append({**data["annotations"][0], "id": 999})
    source.write_text(json.dumps(data))
    args = ("coco-video", "--json", source, "--images", vos[0] / "JPEGImages", "--out", tmp_path / "o.json")
    code, _, err = run_import(*args, capsys=capsys)
    image = data["annotations"][0]["image_id"]
    index = len(data["annotations"]) - 1
    assert one_error(code, err) == (
        f"{source}: annotation {index} (id 999): duplicate track id 1 in image {image} "
        "(annotation 0 has it too)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["annotations"][0].pop("track_id"), r"annotation 0 \(id 1\): no track id"),
        (lambda d: d["images"][0].pop("video_id"), r"image 0 \(id 103\): no video field"),
        (lambda d: d["images"][1].update(frame_id=3), r"images 103 and 102 are both frame 3 of video 1"),
        (
            lambda d: d["annotations"][0].update(category_id=12),
            r"annotation 2 \(id 3\): track 1 is 'person' here but 'car' in annotation 0",
        ),
        (
            lambda d: d["annotations"][0].update(segmentation=[[1, 2, 1e9, 2, 3, 4]]),
            r"annotation 0 .*far outside",
        ),
    ],
)
def test_bad_coco_video_input(vos, tmp_path, capsys, change, message: str) -> None:
    source = coco_video_json(tmp_path)
    data = json.loads(source.read_text())
    change(data)
    source.write_text(json.dumps(data))
    args = ("coco-video", "--json", source, "--images", vos[0] / "JPEGImages", "--out", tmp_path / "o.json")
    error = one_error(*run_import(*args, capsys=capsys)[::2])
    assert error.startswith(f"{source}: ")
    assert re.search(message, error), error


def test_outputs_are_never_overwritten_silently_nor_inputs_ever(vos, tmp_path, capsys) -> None:
    root, classes = vos
    out = tmp_path / "train.json"
    out.write_text("keep")
    base = ("vos", "--root", root, "--classes", classes)
    assert "already exists; pass --overwrite" in one_error(
        *run_import(*base, "--out", out, capsys=capsys)[::2]
    )
    assert out.read_text() == "keep"
    assert run_import(*base, "--out", out, "--overwrite", capsys=capsys)[0] == 0
    assert json.loads(out.read_text())["videos"]
    inside = root / "Annotations" / "walk" / "x.json"
    error = one_error(*run_import(*base, "--out", inside, "--overwrite", capsys=capsys)[::2])
    assert "would replace the input" in error
    assert not inside.exists()
    error = one_error(*run_import(*base, "--out", classes, "--overwrite", capsys=capsys)[::2])
    assert "would replace the input" in error and json.loads(classes.read_text()) == CLASSES


# --------------------------------------------------------------------------- sparse frames
@pytest.fixture(scope="module")
def imported(vos, tmp_path_factory) -> Path:
    root, classes = vos
    out = tmp_path_factory.mktemp("imported") / "train.json"
    assert import_main(list(map(str, ["vos", "--root", root, "--classes", classes, "--out", out]))) == 0
    return out


def test_registered_loader_keeps_only_the_annotated_frames(vos, imported) -> None:
    image_root = vos[0] / "JPEGImages"
    plain = {v["video_id"]: v for v in load_ytvis_json(imported, image_root)}
    sparse = {v["video_id"]: v for v in load_imported_dataset(str(imported), str(image_root))}
    assert plain[2]["length"] == 6  # the plain loader reads frame 2 as "nothing there"
    assert plain[2]["annotations"][2] == []
    walk = sparse[2]
    assert walk["length"] == 5 and walk["annotated_frames"] == [0, 1, 3, 4, 5]
    assert [Path(f).name for f in walk["file_names"]] == [
        "00000.jpg",
        "00001.jpg",
        "00003.jpg",
        "00004.jpg",
        "00005.jpg",
    ]
    assert [len(a) for a in walk["annotations"]] == [2, 2, 2, 1, 1]
    assert sparse[1] == plain[1]  # densely annotated: unchanged


def test_metric_compares_the_annotated_frames_only(imported) -> None:
    gt = json.loads(imported.read_text())
    walk = gt["annotations"][2]  # person in walk, null on the unannotated frame 2
    blob = rle((0, 40, 90, 30))  # a prediction on frame 2 is neither right nor wrong there
    full = [s or blob for s in walk["segmentations"]]
    base = {"video_id": 2, "category_id": 1, "score": 0.9}
    every_frame = evaluate_ytvis(gt, [{**base, "segmentations": full}])
    annotated_only = evaluate_ytvis(gt, [{**base, "segmentations": [full[t] for t in (0, 1, 3, 4, 5)]}])
    assert every_frame == annotated_only
    # exact on the annotated frames; the person of cross is missed: recall 1/2, AP 51/101
    assert every_frame.per_category_ap[1] == pytest.approx(51 / 101)
    del gt["videos"][1]["annotated_frames"]  # read as "nothing there", frame 2 ruins the IoU
    assert evaluate_ytvis(gt, [{**base, "segmentations": full}]).per_category_ap[1] == 0.0
    with pytest.raises(
        YTVISFormatError, match=r"results entry 0 \(video_id 2\): 4 segmentations for a video"
    ):
        evaluate_ytvis(gt, [{**base, "segmentations": full[:4]}])


def test_metric_on_videos_without_annotated_frames_and_bad_frame_lists(imported) -> None:
    gt = json.loads(imported.read_text())
    results = [{"video_id": 2, "category_id": 1, "score": 0.9, "segmentations": [None] * 6}]
    baseline = evaluate_ytvis({**gt, "videos": gt["videos"][:1], "annotations": gt["annotations"][:2]}, [])
    gt["videos"][1]["annotated_frames"] = []  # nothing annotated: the video and its results are left out
    assert evaluate_ytvis(gt, results) == baseline
    gt["videos"][1]["annotated_frames"] = [3, 1]
    with pytest.raises(YTVISFormatError, match=r"^gt.json: ground-truth video 1: annotated_frames must list"):
        evaluate_ytvis(gt, results, gt_source="gt.json")


def test_dataset_specs() -> None:
    assert parse_dataset_specs(" a=x.json:img , b.v-2=y.json:dir/img,") == [
        ("a", "x.json", "img"), ("b.v-2", "y.json", "dir/img")
    ]  # fmt: skip
    (name, error), (none, error2) = parse_dataset_specs("c=only.json,=x:y")
    assert name == "c" and "expected NAME=JSON:IMAGE_ROOT" in str(error)
    assert none is None and "'=x:y'" in str(error2)


def test_environment_registration(vos, imported) -> None:
    code = (
        "import minvis.data\n"
        "from detectron2.data import DatasetCatalog, MetadataCatalog\n"
        "meta = MetadataCatalog.get('mine')\n"
        "print(meta.thing_classes, meta.thing_dataset_id_to_contiguous_id, meta.thing_colors,\n"
        "      meta.evaluator_type)\n"
        "print([v['length'] for v in DatasetCatalog.get('mine')])\n"
    )
    env = {**os.environ, "MINVIS_DATASETS": f"mine={imported}:{vos[0] / 'JPEGImages'}"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "['person', 'bag', 'car'] {1: 0, 2: 1, 3: 2} [[242, 154, 73], [105, 73, 242], [90, 242, 73]] ytvis",
        "[4, 5]",
    ]


# --------------------------------------------------------------------------- train and evaluate
def test_train_and_evaluate_from_the_command_line_without_code(vos, tmp_path, capsys) -> None:
    """Import, register by environment, train the tiny model 2 iterations, --eval-only on a held-out video."""
    root, classes = vos
    (tmp_path / "val.txt").write_text("cross\n")
    train, val = tmp_path / "train.json", tmp_path / "val.json"
    assert run_import("vos", "--root", root, "--classes", classes, "--out", train, capsys=capsys)[0] == 0
    args = ("vos", "--root", root, "--classes", classes, "--videos", tmp_path / "val.txt", "--out", val)
    assert run_import(*args, capsys=capsys)[0] == 0
    frames = root / "JPEGImages"
    env = {
        **os.environ,
        "MINVIS_DATASETS": f"mine_train={train}:{frames},mine_val={val}:{frames}",
        "OMP_NUM_THREADS": "1",
    }
    common = [
        sys.executable, "train_net.py", "--config-file", TINY_CONFIG,
        "DATASETS.TRAIN", "('mine_train',)", "DATASETS.TEST", "('mine_val',)",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 3,
        "SOLVER.IMS_PER_BATCH", 2, "SOLVER.MAX_ITER", 2, "SOLVER.WARMUP_ITERS", 1, "SOLVER.STEPS", "(1,)",
        "DATALOADER.NUM_WORKERS", 0, "NUM_THREADS", 1, "SEED", 0,
    ]  # fmt: skip
    output = tmp_path / "run"
    trained = subprocess.run(
        list(map(str, [*common, "TEST.EVAL_PERIOD", 0, "OUTPUT_DIR", output])),
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-4000:]
    evaluated = subprocess.run(
        list(map(str, [*common[:2], "--eval-only", *common[2:],
                       "MODEL.WEIGHTS", output / "model_final.pth", "OUTPUT_DIR", tmp_path / "eval"])),
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    log = evaluated.stdout + evaluated.stderr
    assert evaluated.returncode == 0, log[-4000:]
    assert "copypaste: AP,AP50,AP75,APs,APm,APl,AR1,AR10,AR100,ARs,ARm,ARl" in log
    results = json.loads((tmp_path / "eval" / "inference" / "results.json").read_text())
    assert {r["video_id"] for r in results} == {1}
    assert all(len(r["segmentations"]) == 4 for r in results)
