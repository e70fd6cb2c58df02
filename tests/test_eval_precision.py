"""Evaluation precision as the official trainer: CUDA autocast behind TEST.AMP.ENABLED
(on by default), float32 on the CPU; tracking always on float32 outputs.

No GPU here: the float16 deviation on CUDA is measured by the GPU benchmark, not by these tests.
"""

import itertools
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS
from detectron2.modeling import build_model
from helpers import paper_exact_video_results

import minvis.tracking.tracker as tracker_module
from minvis.config import build_config
from minvis.data import register_synthetic_ytvis
from minvis.data.synthetic import SyntheticSpec, write_split
from minvis.engine import Trainer
from minvis.engine.trainer import use_eval_autocast

TINY_CONFIG = str(CONFIGS / "tiny" / "minvis_tiny_synthetic.yaml")
_prefixes = itertools.count()


def test_autocast_default_is_the_official_behaviour() -> None:
    assert build_config(TINY_CONFIG).TEST.AMP.ENABLED is True


@pytest.mark.parametrize(
    "enabled, device, expected",
    [
        (True, "cuda", True),
        (True, "cuda:1", True),
        (True, torch.device("cuda", 0), True),
        (True, "cpu", False),
        (False, "cuda", False),
        (False, "cpu", False),
    ],
)
def test_autocast_decision(enabled: bool, device: str | torch.device, expected: bool) -> None:
    assert use_eval_autocast(enabled, device) is expected


def tiny_model(seed: int = 0) -> tuple[torch.nn.Module, object]:
    cfg = build_config(TINY_CONFIG, ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(seed)
    return build_model(cfg).eval(), cfg


def test_tracking_runs_on_float32_outputs_under_autocast(monkeypatch) -> None:
    # CPU autocast (bfloat16) stands in for CUDA's: the image model runs in low precision,
    # the tracker and the video-level result must see float32 outputs and run in float32.
    model, _ = tiny_model()
    generator = torch.Generator().manual_seed(0)
    frames = [torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8, generator=generator) for _ in range(4)]
    costs: list[torch.dtype] = []
    solve = tracker_module.solve_assignment
    spy = lambda cost: costs.append(cost.dtype) or solve(cost)  # noqa: E731
    monkeypatch.setattr(tracker_module, "solve_assignment", spy)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        windows = list(model.frame_outputs(frames))
        result = model.track_video({"image": frames}).to_dict()
    assert {w.logits.dtype for w in windows} == {torch.bfloat16}  # the model did run in low precision
    assert costs and set(costs) == {torch.float32}

    expected = paper_exact_video_results(
        *(torch.cat([getattr(w, field) for w in windows]).float() for field in ("logits", "masks", "embds")),
        image_size=windows[0].image_size, padded_size=windows[0].padded_size, output_size=(64, 80),
    )  # fmt: skip
    assert result["pred_scores"] == expected["pred_scores"]
    assert result["pred_labels"] == expected["pred_labels"]
    for got, want in zip(result["pred_masks"], expected["pred_masks"], strict=True):
        assert torch.equal(got, want)


def test_eval_with_autocast_on_equals_float32_on_cpu(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    write_split(root / "synthetic_ytvis", "val", 2, SyntheticSpec(num_frames=4, height=64, width=80), seed=0)
    prefix = f"precision_test_{next(_prefixes)}"
    register_synthetic_ytvis(str(root / "synthetic_ytvis"), prefix=prefix, splits=("val",))
    model, _ = tiny_model()
    outputs = {}
    for enabled in (True, False):
        cfg = build_config(
            TINY_CONFIG,
            ["MODEL.DEVICE", "cpu", "DATASETS.TEST", f"('{prefix}_val',)", "DATALOADER.NUM_WORKERS", 0,
             "OUTPUT_DIR", tmp_path / str(enabled), "TEST.AMP.ENABLED", enabled],
        )  # fmt: skip
        Trainer.test(cfg, model)
        outputs[enabled] = (tmp_path / str(enabled) / "inference" / "results.json").read_bytes()
    assert outputs[True] == outputs[False]
