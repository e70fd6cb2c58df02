"""The precision benchmarks stay runnable: fp32 against bf16 and the exported model on the
tiny config, and the deviation from the official outputs on the parity fixture."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "tools" / "benchmarks" / "bench_inference.py"
FIXTURE = REPO.parent / "shared" / "fixtures" / "parity_ytvis19_r50tiny_s0.pth"


def run(*args: str) -> str:
    command = [sys.executable, str(BENCHMARK), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
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
