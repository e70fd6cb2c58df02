"""The exported image model (issue 24): ``tools/export/export_model.py`` writes a checked
``model.onnx`` with its config, and the predictor, the demo and ``train_net.py --eval-only`` run
it in ONNX Runtime with the PyTorch path's results, within the README's tolerances.

One export of the tiny config (random weights, saved first so that both paths share them) serves
the whole module; the export itself takes most of its time.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import REPO, TINY_CONFIG
from detectron2.modeling import build_model
from pycocotools import mask as mask_utils

from minvis.config import build_config
from minvis.data.synthetic import SyntheticSpec, render_video, video_rng, write_video_file
from minvis.data.video_io import open_frame_source
from minvis.modeling.exported import OUTPUT_NAMES, PREPROCESSING_KEY
from minvis.predictor import VideoPredictor
from minvis.ytvis_format import load_results

script = importlib.util.spec_from_file_location("export_model", REPO / "tools" / "export" / "export_model.py")
export_model = importlib.util.module_from_spec(script)
script.loader.exec_module(export_model)

# The README's tolerances of the exported model against the PyTorch path (fp32).
MAX_SCORE_ERROR = 1e-4
MIN_MASK_IOU = 0.99


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"model": build_model(build_config(str(TINY_CONFIG))).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def exported(weights, tmp_path_factory) -> Path:
    """The export folder (model.onnx, config.yaml) of the tiny model with ``weights``."""
    folder = tmp_path_factory.mktemp("exported")
    code = export_model.main(["--config-file", str(TINY_CONFIG), "--output", str(folder),
                              "--opts", "MODEL.WEIGHTS", str(weights)])  # fmt: skip
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def predictors(exported, weights) -> dict[str, VideoPredictor]:
    """The PyTorch and the ONNX Runtime predictor of the same weights (every track reported)."""
    configs = {"pytorch": build_config(str(TINY_CONFIG), ["MODEL.WEIGHTS", weights])}
    configs["onnx"] = build_config(str(exported / "config.yaml"))
    return {name: VideoPredictor.from_config(cfg, score_threshold=0.0) for name, cfg in configs.items()}


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


@pytest.fixture(scope="module")
def video() -> list[np.ndarray]:
    spec = SyntheticSpec(num_frames=6, height=96, width=160)
    return render_video(video_rng(0, "export_test", 0), spec).frames


def test_export_writes_a_checked_model_with_symbolic_sizes_and_its_config(exported):
    model = onnx.load(str(exported / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    height, width = model.graph.input[0].type.tensor_type.shape.dim[2:]
    assert height.dim_param and width.dim_param  # not the probe's sizes
    preprocessing = json.loads({p.key: p.value for p in model.metadata_props}[PREPROCESSING_KEY])
    assert preprocessing["size_divisibility"] == 32 and preprocessing["min_size_test"] == 128
    cfg = build_config(str(exported / "config.yaml"))
    assert cfg.MODEL.WEIGHTS == str(exported / "model.onnx")
    assert cfg.MODEL.MASK_FORMER.TEST.PRECISION == "fp32"


def test_outputs_equal_pytorch_at_a_size_the_export_never_saw(predictors):
    images = torch.randn(2, 3, 96, 320, generator=torch.Generator().manual_seed(1))  # two frames at once
    with torch.no_grad():
        ours, reference = (predictors[name].model._network(images) for name in ("onnx", "pytorch"))
    for name in OUTPUT_NAMES:
        assert ours[name].shape == reference[name].shape
        error = (ours[name] - reference[name]).abs().max()
        assert error <= export_model.PROBE_TOLERANCE * reference[name].abs().max(), name


def test_streaming_tracks_equal_the_pytorch_path(predictors, video):
    runs = {name: list(predictor(video)) for name, predictor in predictors.items()}
    for ours, reference in zip(runs["onnx"], runs["pytorch"], strict=True):
        assert len(reference.track_ids) > 0
        assert torch.equal(ours.track_ids, reference.track_ids) and torch.equal(ours.labels, reference.labels)
        assert (ours.scores - reference.scores).abs().max() <= MAX_SCORE_ERROR
        assert min(map(iou, ours.masks, reference.masks)) >= MIN_MASK_IOU


def test_video_results_equal_the_pytorch_path(predictors, video):
    results = {name: predictor.track_video(video) for name, predictor in predictors.items()}
    ours, reference = results["onnx"], results["pytorch"]
    assert ours["pred_labels"] == reference["pred_labels"]
    assert np.abs(np.subtract(ours["pred_scores"], reference["pred_scores"])).max() <= MAX_SCORE_ERROR
    assert min(map(iou, ours["pred_masks"], reference["pred_masks"])) >= MIN_MASK_IOU


def test_the_demo_runs_the_exported_model(exported, video, tmp_path):
    write_video_file(tmp_path / "video.mp4", video)
    command = [sys.executable, "demo/demo.py", "--config-file", exported / "config.yaml", "--input",
               tmp_path / "video.mp4", "--output", tmp_path / "out", "--confidence-threshold", "0",
               "--opts", "MODEL.WEIGHTS", exported / "model.onnx", "MODEL.DEVICE", "cpu"]  # fmt: skip
    done = subprocess.run(list(map(str, command)), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(load_results(tmp_path / "out" / "results.json")) > 0


def test_eval_only_runs_the_exported_model(exported, predictors, tiny_datasets, tmp_path):
    env = {**os.environ, "DETECTRON2_DATASETS": str(tiny_datasets), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "train_net.py", "--eval-only", "--config-file", exported / "config.yaml",
               "MODEL.WEIGHTS", exported / "model.onnx", "OUTPUT_DIR", tmp_path, "DATALOADER.NUM_WORKERS", 0]
    done = subprocess.run(list(map(str, command)), cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    results = load_results(tmp_path / "inference" / "results.json")
    # The PyTorch predictor on the same videos: the same instances, scores and masks.
    reference, dataset = predictors["pytorch"], tiny_datasets / "synthetic_ytvis"
    for video in json.loads((dataset / "val.json").read_text())["videos"]:
        folder = dataset / "val" / "JPEGImages" / Path(video["file_names"][0]).parent
        expected = reference.track_video(open_frame_source(folder))
        entries = sorted((r for r in results if r["video_id"] == video["id"]), key=lambda r: -r["score"])
        order = np.argsort(expected["pred_scores"])[::-1]
        categories = [reference.category_ids[expected["pred_labels"][i]] for i in order]
        assert [r["category_id"] for r in entries] == categories
        for entry, i in zip(entries, order, strict=True):
            assert abs(entry["score"] - expected["pred_scores"][i]) <= MAX_SCORE_ERROR
            masks = torch.from_numpy(mask_utils.decode(entry["segmentations"])).permute(2, 0, 1).bool()
            assert iou(masks, expected["pred_masks"][i]) >= MIN_MASK_IOU
