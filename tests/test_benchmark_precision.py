"""The precision benchmarks stay runnable: fp32 against bf16 and the exported model on the
tiny config, and the deviation from the official outputs on the parity fixture."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "tools" / "benchmarks" / "bench_inference.py"
FIXTURE = REPO.parent / "shared" / "fixtures" / "parity_ytvis19_r50tiny_s0.pth"


def run(*args: str, env: dict[str, str] | None = None) -> str:
    command = [sys.executable, str(BENCHMARK), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def cells(out: str, *first: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith(first)]


def test_tiny_run_times_both_precisions_and_compares_their_outputs() -> None:
    out = run("precision", "--config", "tiny", "--frames", "2", "--repeats", "2", "--height", "64",
              "--width", "96")  # fmt: skip
    table = cells(out, "| fp32", "| bf16")
    assert [row[0] for row in table] == ["fp32", "bf16"]
    for row in table:
        assert float(row[1]) > 0 and len(row[2].split(",")) == 2  # median and both runs
    assert "bf16 speed-up:" in out
    deviation = out.split("bf16 vs fp32 outputs: ")[1].splitlines()[0]
    assert float(deviation.split("min mask IoU ")[1]) > 0  # the same weights: overlapping masks


def test_accuracy_evaluates_a_trained_model_in_both_precisions(tiny_run: Path, tiny_datasets: Path) -> None:
    env = {**os.environ, "DETECTRON2_DATASETS": str(tiny_datasets)}
    weights = ["--weights", str(tiny_run / "model_final.pth")]
    out = run("accuracy", "--config-file", str(tiny_run / "config.yaml"), *weights, env=env)
    fp32, bf16 = cells(out, "| fp32", "| bf16")
    trained = json.loads((tiny_run / "inference" / "metrics.json").read_text())
    # fp32: what the training run's own evaluation gave
    assert fp32[1:] == [f"{100 * trained[key]:.2f}" for key in ("AP", "AP50", "AP75")]
    assert bf16[0] == "bf16" and all(0 <= float(ap) <= 100 for ap in bf16[1:])
    all_tracks = out.split("fp32 tracks scoring >= 0.0 (")[1]
    predictions = json.loads((tiny_run / "inference" / "results.json").read_text())
    assert all_tracks.startswith(f"{len(predictions)} in 2 videos) vs bf16: same label ")
    iou_median = float(all_tracks.split("mask IoU median ")[1].split(",")[0])
    assert 0 < iou_median <= 1  # the same weights: overlapping masks


def test_pairing_prefers_the_label_then_the_mask() -> None:
    sys.path.insert(0, str(BENCHMARK.parent))
    import harness

    masks = [torch.tensor([1, 1, 0, 0], dtype=torch.bool), torch.tensor([0, 0, 1, 1], dtype=torch.bool)]
    reference = {"pred_scores": [0.9, 0.8, 0.7], "pred_labels": [3, 3, 5], "pred_masks": [*masks, masks[0]]}
    ours = {"pred_scores": [0.8, 0.9, 0.1], "pred_labels": [3, 3, 4], "pred_masks": [*masks, masks[1]]}
    # label 3 with mask 0: reference 0 (IoU 1, not the nearer score 0.8 of reference 1); then
    # label 3 with mask 1: reference 1; label 4 has no match left but reference 2 (IoU 0).
    assert harness.pair_instances(ours, reference) == [
        (True, pytest.approx(0.1), 1.0), (True, pytest.approx(0.1), 1.0), (False, pytest.approx(0.6), 0.0)
    ]  # fmt: skip


def test_tiny_run_times_the_exported_model_beside_pytorch() -> None:
    out = run("onnx", "--config", "tiny", "--frames", "2", "--repeats", "1", "--height", "64",
              "--width", "96")  # fmt: skip
    assert [row[0] for row in cells(out, "| fp32", "| bf16", "| onnx")] == ["fp32", "bf16", "onnx"]
    deviation = out.split("onnx vs fp32 outputs: ")[1].splitlines()[0]
    assert "labels equal yes" in deviation  # the README's tolerance of the exported model
    assert float(deviation.split("max score difference ")[1].split(",")[0]) <= 1e-4
    assert float(deviation.split("min mask IoU ")[1]) >= 0.99


@pytest.mark.skipif(not FIXTURE.exists(), reason="no parity fixture")
def test_parity_fp32_matches_the_official_outputs() -> None:
    (row,) = cells(run("parity", "--precision", "fp32"), "| fp32")
    labels_equal, score_error, min_iou = row[1], float(row[2]), float(row[3])
    assert labels_equal == "yes" and score_error < 1e-5 and min_iou == 1.0
    assert max(float(x) for x in row[4:]) < 1e-3  # raw logits, mask logits, embeddings
