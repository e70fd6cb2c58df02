"""demo/demo.py --mode video (the paper's video-level output, two passes) and --frame-stride,
on the first frames of a real clip, against the model's paper-exact result for the same frames."""

import importlib.util
import itertools
import json
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, REPO
from detectron2.modeling import build_model

from minvis.config import build_config
from minvis.data.video_io import open_frame_source
from minvis.evaluation.evaluator import video_entries
from minvis.predictor import VideoPredictor

DEMO = REPO / "demo" / "demo.py"
TINY_CONFIG = str(CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml")
VTEST = REPO.parent / "shared" / "data" / "vtest.avi"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A deterministic random-init tiny model, saved as a checkpoint the demo loads."""
    torch.manual_seed(0)
    model = build_model(build_config(TINY_CONFIG, ["MODEL.DEVICE", "cpu"]))
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture
def demo(monkeypatch):
    """The demo module, with draw_instances recording what it is asked to draw per frame."""
    spec = importlib.util.spec_from_file_location("minvis_demo_under_test", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.drawn = []
    draw = module.draw_instances

    def recording_draw(frame, instances, class_names):
        shown = (instances.track_ids.tolist(), instances.labels.tolist(), instances.scores.tolist())
        module.drawn.append(shown)
        return draw(frame, instances, class_names)

    monkeypatch.setattr(module, "draw_instances", recording_draw)
    return module


def paper_exact(weights: Path, frame_indices: list[int]) -> tuple[list[dict], list[tuple]]:
    """The model's video-level result on those frames of VTEST: submission entries, and per
    frame the (instance, label, score) of the instances with a non-empty mask there."""
    # One frame per window, as the demo feeds the model (batched frames differ in the last bits).
    window = ["MODEL.MASK_FORMER.TEST.WINDOW_INFERENCE", True, "MODEL.MASK_FORMER.TEST.WINDOW_SIZE", 1]
    cfg = build_config(TINY_CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(weights), *window])
    predictor = VideoPredictor.from_config(cfg)
    decoded = itertools.islice(open_frame_source(VTEST), max(frame_indices) + 1)
    frames = [f for t, f in enumerate(decoded) if t in frame_indices]
    height, width = frames[0].shape[:2]
    video = {"image": [predictor.preprocess(f) for f in frames], "height": height, "width": width}
    result = predictor.model.track_video(video)
    entries = video_entries(1, result, dict(enumerate(predictor.category_ids)))
    drawn = []
    for masks in result.frame_masks():  # [k, H, W]
        shown = [i for i in range(len(result.scores)) if masks[i].any()]
        drawn.append((shown, [result.labels[i] for i in shown], [result.scores[i] for i in shown]))
    return entries, drawn


def run_demo(demo, weights: Path, output: Path, *args: object) -> list[dict]:
    argv = ["--config-file", TINY_CONFIG, "--input", str(VTEST), "--output", str(output),
            "--confidence-threshold", "0", *map(str, args),
            "--opts", "MODEL.WEIGHTS", str(weights)]  # fmt: skip
    assert demo.main(argv) == 0
    return json.loads((output / "results.json").read_text())


def test_video_mode_draws_the_paper_exact_top_k(demo, weights: Path, tmp_path: Path) -> None:
    results = run_demo(demo, weights, tmp_path, "--mode", "video", "--max-frames", 4)
    entries, drawn = paper_exact(weights, [0, 1, 2, 3])
    assert results == entries  # the top-k instances, video-level class and score, every frame
    assert len(entries) == 10 and all(len(e["segmentations"]) == 4 for e in entries)
    assert demo.drawn == drawn


def test_frame_stride_takes_every_nth_frame(demo, weights: Path, tmp_path: Path) -> None:
    stride = ["--max-frames", 7, "--frame-stride", 3]
    results = run_demo(demo, weights, tmp_path / "video", "--mode", "video", *stride)
    entries, drawn = paper_exact(weights, [0, 3, 6])
    assert results == entries and demo.drawn == drawn
    stream = run_demo(demo, weights, tmp_path / "stream", *stride)
    assert stream and all(len(e["segmentations"]) == 3 for e in stream)


def test_frame_stride_must_be_positive(demo, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo.parse_args(["--config-file", "c", "--input", "x", "--output", "y", "--frame-stride", "0"])
    assert exit_info.value.code == 2 and "--frame-stride must be >= 1" in capsys.readouterr().err
