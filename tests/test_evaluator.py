"""YTVISEvaluator driven with hand-made model outputs (no model), in one and two processes."""

import itertools
import json
import logging
import time
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import CONFIGS
from helpers import encode_mask
from PIL import Image
from torch import nn

from minvis.config import build_config
from minvis.data import register_ytvis_instances, ytvis_metadata
from minvis.engine import Trainer, launch
from minvis.evaluation.evaluator import YTVISEvaluator, per_class_ap, per_class_table
from minvis.evaluation.ytvis_metric import OVIS_STAT_NAMES, YTVISMetrics, evaluate_ytvis
from minvis.tracking import VideoResult
from minvis.ytvis_format import load_results

H, W = 8, 10
CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]  # contiguous labels 0, 1
_names = itertools.count()


def box(top: int, left: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[top : top + 3, left : left + 4] = True
    return mask


EMPTY = np.zeros((H, W), dtype=bool)
# video id -> ground-truth tracks as (category id, [mask per frame]); EMPTY = absent.
TRACKS = {
    11: [(3, [box(0, 0), box(1, 1), EMPTY]), (7, [box(4, 5), box(4, 6), box(5, 6)])],
    22: [(7, [box(2, 3), box(3, 3)])],
}
# The same tracks as model output: (score, contiguous label, [T, H, W] bool masks).
DIST_TIMEOUT = timedelta(seconds=3)  # the 2-process runs' --dist-timeout
PERFECT = {
    video_id: [(0.9 - 0.1 * i, [c["id"] for c in CATEGORIES].index(cat), np.stack(masks))
               for i, (cat, masks) in enumerate(tracks)]
    for video_id, tracks in TRACKS.items()
}  # fmt: skip


def gt_json(annotated: bool = True) -> dict:
    videos = [
        {"id": vid, "file_names": [f"{vid}/{t}.jpg" for t in range(len(tracks[0][1]))],
         "length": len(tracks[0][1]), "height": H, "width": W}
        for vid, tracks in TRACKS.items()
    ]  # fmt: skip
    data = {"videos": videos, "categories": CATEGORIES}
    if annotated:
        data["annotations"] = [
            {"id": i, "video_id": vid, "category_id": cat, "iscrowd": 0,
             "segmentations": [encode_mask(m) for m in masks],
             "areas": [int(m.sum()) or None for m in masks],
             "bboxes": [mask_util.toBbox(mask_util.encode(np.asfortranarray(m))).tolist()
                        if m.any() else None for m in masks]}
            for i, (vid, (cat, masks)) in enumerate(
                ((vid, track) for vid, tracks in TRACKS.items() for track in tracks), start=1
            )
        ]  # fmt: skip
    return data


def register(tmp_path: Path, annotated: bool = True, metadata: dict | None = None) -> str:
    """Write the ground truth to ``tmp_path/gt.json`` and register it under a new name.

    ``metadata`` defaults to the category table's (like the builtin datasets).
    """
    name = f"evaluator_test_{next(_names)}"
    (tmp_path / "gt.json").write_text(json.dumps(gt_json(annotated)))
    metadata = ytvis_metadata(CATEGORIES) if metadata is None else metadata
    register_ytvis_instances(name, metadata, tmp_path / "gt.json", tmp_path / "frames")
    return name


def video_result(
    instances: list[tuple[float, int, np.ndarray]], num_frames: int | None = None
) -> VideoResult:
    """The model's eval output: the evaluator encodes its masks one frame at a time."""
    if instances:
        masks = torch.from_numpy(np.stack([m for _, _, m in instances]))  # [k, T, H, W]
    else:
        masks = torch.zeros((0, num_frames, H, W), dtype=torch.bool)
    return VideoResult(
        image_size=(H, W),
        scores=[score for score, _, _ in instances],
        labels=[label for _, label, _ in instances],
        num_frames=masks.shape[1],
        mask_frames=lambda: iter(masks.unbind(1)),
    )


def perfect_outputs() -> dict[int, VideoResult]:
    return {video_id: video_result(instances) for video_id, instances in PERFECT.items()}


def run(evaluator: YTVISEvaluator, outputs: dict[int, dict]) -> dict:
    evaluator.reset()
    for video_id, output in outputs.items():
        evaluator.process([{"video_id": video_id}], output)
    return evaluator.evaluate()


def percent(stats: dict[str, float]) -> dict[str, float]:
    return {k: 100 * v if v >= 0 else v for k, v in stats.items()}


def test_masks_become_server_entries_in_a_zip(tmp_path: Path) -> None:
    name = register(tmp_path)
    run(YTVISEvaluator(name, output_dir=str(tmp_path / "out")), perfect_outputs())

    entries = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(e["video_id"], e["category_id"]) for e in entries] == [(11, 3), (11, 7), (22, 7)]
    assert [e["score"] for e in entries] == pytest.approx([0.9, 0.8, 0.9])
    expected_masks = [m for tracks in TRACKS.values() for _, m in tracks]
    for entry, masks in zip(entries, expected_masks, strict=True):
        assert len(entry["segmentations"]) == len(masks)
        for segm, mask in zip(entry["segmentations"], masks, strict=True):
            # Every frame an RLE, all-zero where the instance is absent (official format).
            assert np.array_equal(mask_util.decode({**segm, "counts": segm["counts"].encode()}), mask)
    with zipfile.ZipFile(tmp_path / "out" / "results.zip") as archive:
        assert archive.namelist() == ["results.json"]
    assert load_results(tmp_path / "out" / "results.zip") == entries


def test_perfect_predictions_score_100(tmp_path: Path) -> None:
    result = run(YTVISEvaluator(register(tmp_path)), perfect_outputs())
    assert result["segm"]["AP"] == pytest.approx(100.0)
    assert result["segm"]["AR1"] == pytest.approx(100.0)
    assert list(tmp_path.iterdir()) == [tmp_path / "gt.json"]  # no output_dir: nothing written


def test_metric_is_evaluate_ytvis_on_the_written_entries(tmp_path: Path) -> None:
    (_, _, cat_masks), (_, _, dog_masks) = PERFECT[11]
    shifted = np.roll(cat_masks, 1, axis=2)
    outputs = {
        11: video_result([(0.9, 0, shifted), (0.85, 0, dog_masks), (0.6, 1, dog_masks)]),
        22: video_result([(0.3, 1, PERFECT[22][0][2]), (0.7, 0, PERFECT[22][0][2])]),
    }
    out = tmp_path / "out"
    result = run(YTVISEvaluator(register(tmp_path), output_dir=str(out)), outputs)

    expected = evaluate_ytvis(gt_json(), load_results(out / "results.zip"))
    per_class = {f"AP-{c['name']}": 100 * expected.per_category_ap[c["id"]] for c in CATEGORIES}
    assert result["segm"] == pytest.approx({**percent(expected.stats), **per_class})
    assert list(result["segm"]) == [*expected.stats, "AP-cat", "AP-dog"]
    assert 0 < result["segm"]["AP"] < 100
    written = json.loads((out / "metrics.json").read_text())
    assert written["AP"] == pytest.approx(expected.stats["AP"])
    assert written["per_category_AP"] == {str(k): v for k, v in expected.per_category_ap.items()}


def test_ovis_occlusion_ground_truth_adds_the_eighteen_numbers(tmp_path: Path) -> None:
    name = register(tmp_path)
    gt = gt_json()
    # Track occlusion = mean of its most occluded half: none -> light, 0.75 -> heavy, none -> light.
    per_track = (["no_occlusion"] * 3, ["severe_occlusion", "severe_occlusion", "no_occlusion"], 0.0)
    for annotation, occlusion in zip(gt["annotations"], per_track, strict=True):
        annotation["occlusion"] = occlusion
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    out = tmp_path / "out"
    result = run(YTVISEvaluator(name, output_dir=str(out)), perfect_outputs())["segm"]

    assert list(result)[: len(OVIS_STAT_NAMES)] == list(OVIS_STAT_NAMES)
    occlusion = {key: round(result[key], 6) for key in ("AP_light", "AP_medium", "AP_heavy", "AR_heavy")}
    assert occlusion == {"AP_light": 100.0, "AP_medium": -1.0, "AP_heavy": 100.0, "AR_heavy": 100.0}
    written = json.loads((out / "metrics.json").read_text())
    assert [key for key in written if key != "per_category_AP"] == list(OVIS_STAT_NAMES)
    assert written["AP_medium"] == -1.0


def test_official_positional_signature(tmp_path: Path) -> None:
    # As the official train_net_video.py: YTVISEvaluator(dataset_name, cfg, True, output_folder).
    cfg = build_config(str(CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml"))
    evaluator = YTVISEvaluator(register(tmp_path), cfg, True, str(tmp_path / "out"))
    result = run(evaluator, perfect_outputs())
    assert result["segm"]["AP"] == pytest.approx(100.0)
    assert [result["segm"][f"AP-{c}"] for c in ("cat", "dog")] == pytest.approx([100.0, 100.0])
    assert (tmp_path / "out" / "results.zip").exists()
    keywords = YTVISEvaluator(register(tmp_path), tasks=("segm",), distributed=False, use_fast_impl=False)
    assert run(keywords, perfect_outputs())["segm"]["AP"] == pytest.approx(100.0)


def test_per_class_ap_is_nan_without_ground_truth_and_logged_as_a_table(tmp_path: Path, caplog) -> None:
    metrics = YTVISMetrics(stats={}, per_category_ap={3: 0.25, 7: -1.0})
    per_class = per_class_ap(metrics, ["cat", "dog"], {0: 3, 1: 7})
    assert list(per_class) == ["AP-cat", "AP-dog"]
    assert per_class["AP-cat"] == pytest.approx(25.0) and np.isnan(per_class["AP-dog"])
    table = per_class_table(per_class).splitlines()
    assert table[0].split("|")[1:5] == [" category   ", " AP     ", " category   ", " AP   "]
    assert table[2].split("|")[1:5] == [" cat        ", " 25.000 ", " dog        ", " nan  "]

    logger = logging.getLogger("minvis.evaluation.evaluator")
    logger.addHandler(caplog.handler)  # whatever detectron2's setup_logger did to propagation
    try:
        with caplog.at_level(logging.INFO, logger="minvis.evaluation.evaluator"):
            run(YTVISEvaluator(register(tmp_path)), perfect_outputs())
    finally:
        logger.removeHandler(caplog.handler)
    assert "Per-category segm AP:" in caplog.text and "| cat        | 100.000 |" in caplog.text


def test_outputs_in_a_list_and_reset(tmp_path: Path) -> None:
    name = register(tmp_path)
    single = run(YTVISEvaluator(name, output_dir=str(tmp_path / "single")), perfect_outputs())
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "list"))
    evaluator.process([{"video_id": 99}], video_result(PERFECT[22]))  # dropped by reset()
    # The model returns one result per video; a list of results is accepted too.
    listed = run(evaluator, {v: [video_result(i)] for v, i in PERFECT.items()})
    assert listed == single and listed["segm"]["AP"] == pytest.approx(100.0)
    for file_name in ("results.json", "metrics.json"):
        assert (tmp_path / "list" / file_name).read_text() == (tmp_path / "single" / file_name).read_text()


def test_masks_are_read_frame_by_frame(tmp_path: Path) -> None:
    """The evaluator reads each result's masks once, one frame at a time: it never builds
    the dense ``pred_masks`` of the official dict (built from the frames when read)."""
    outputs = perfect_outputs()
    reads = []
    for video_id, output in outputs.items():
        frames = output.mask_frames

        def counted(frames=frames, video_id=video_id):
            reads.append(video_id)
            yield from frames()

        object.__setattr__(output, "mask_frames", counted)
    result = run(YTVISEvaluator(register(tmp_path)), outputs)
    assert result["segm"]["AP"] == pytest.approx(100.0)
    assert sorted(reads) == sorted(PERFECT)  # once per video: the dense masks would read them again


def test_test_split_writes_the_submission_and_no_metric(tmp_path: Path) -> None:
    name = register(tmp_path, annotated=False)
    result = run(YTVISEvaluator(name, output_dir=str(tmp_path / "out")), perfect_outputs())
    assert result == {}
    assert len(load_results(tmp_path / "out" / "results.zip")) == 3
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_dataset_registered_without_categories_maps_labels_like_loading_would(tmp_path: Path) -> None:
    # The documented custom-dataset form, before anything has loaded the dataset.
    name = register(tmp_path, metadata={})
    result = run(YTVISEvaluator(name, output_dir=str(tmp_path / "out")), perfect_outputs())
    assert result["segm"]["AP"] == pytest.approx(100.0)
    entries = load_results(tmp_path / "out" / "results.zip")
    assert [e["category_id"] for e in entries] == [3, 7, 7]


def test_video_without_instances_adds_no_entry(tmp_path: Path) -> None:
    outputs = {11: video_result(PERFECT[11]), 22: video_result([], num_frames=2)}
    result = run(YTVISEvaluator(register(tmp_path), output_dir=str(tmp_path / "out")), outputs)
    assert {e["video_id"] for e in load_results(tmp_path / "out" / "results.zip")} == {11}
    assert 0 < result["segm"]["AP"] < 100


# ---------------------------------------------------------------------------- two processes


def gather_worker(gt_file: str, out_dir: str, rank1_delay: float = 0.0) -> None:
    """One rank of a 2-process run: each rank evaluates one video (runs in a fresh process);
    rank 1 finishes its inference ``rank1_delay`` seconds after rank 0."""
    from detectron2.utils import comm

    name = "evaluator_test_gather"
    register_ytvis_instances(name, ytvis_metadata(CATEGORIES), gt_file, out_dir)
    video_id = sorted(PERFECT)[comm.get_rank()]
    time.sleep(rank1_delay * comm.get_rank())
    result = run(YTVISEvaluator(name, output_dir=out_dir), {video_id: video_result(PERFECT[video_id])})
    Path(out_dir, f"rank{comm.get_rank()}.json").write_text(json.dumps(result))


@pytest.mark.parametrize("rank1_delay", [0.0, 2 * DIST_TIMEOUT.total_seconds()])
def test_entries_are_gathered_to_the_main_process(tmp_path: Path, rank1_delay: float) -> None:
    """Also when one process ends its share of the videos later than the run's collective
    timeout allows a silent process (it is not silent: it is still working)."""
    register(tmp_path)
    args = (str(tmp_path / "gt.json"), str(tmp_path), rank1_delay)
    launch(gather_worker, 2, use_cuda=False, args=args, timeout=DIST_TIMEOUT)
    entries = load_results(tmp_path / "results.zip")
    assert sorted(e["video_id"] for e in entries) == [11, 11, 22]
    assert json.loads((tmp_path / "rank0.json").read_text())["segm"]["AP"] == pytest.approx(100.0)
    assert json.loads((tmp_path / "rank1.json").read_text()) == {}


# ---------------------------------------------------------------------------- Trainer.test


class ReplayModel(nn.Module):
    """Stands in for VideoMaskFormer_frame: its eval ``forward`` returns the video's
    ``VideoResult`` (PERFECT); records the videos it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, batched_inputs: list[dict]) -> VideoResult:
        (video,) = batched_inputs
        self.calls.append(video["video_id"])
        return video_result(PERFECT[video["video_id"]])


def test_trainer_test_evaluates_the_models_results_and_writes_the_zip(tmp_path: Path) -> None:
    name = register(tmp_path)
    for video in gt_json()["videos"]:
        for file_name in video["file_names"]:
            (tmp_path / "frames" / file_name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (W, H)).save(tmp_path / "frames" / file_name)
    cfg = build_config(
        str(CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml"),
        ["DATASETS.TEST", f"('{name}',)", "DATALOADER.NUM_WORKERS", 0, "OUTPUT_DIR", tmp_path / "run"],
    )
    model = ReplayModel()
    result = Trainer.test(cfg, model)
    assert result["segm"]["AP"] == pytest.approx(100.0)
    assert sorted(model.calls) == sorted(PERFECT) and model.training  # training mode restored
    assert len(load_results(tmp_path / "run" / "inference" / "results.zip")) == 3
