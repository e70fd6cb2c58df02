"""The CUDA benchmark stays runnable: its CPU dry run prints every part.

No GPU here; ``--device cpu`` runs the same code (bfloat16 instead of float16).
"""

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "tools" / "benchmarks" / "bench_inference.py"


def test_cpu_dry_run_prints_every_part() -> None:
    command = [
        sys.executable, str(BENCHMARK), "gpu", "--device", "cpu", "--models", "tiny", "--frames", "2",
        "--deviation-frames", "2", "--repeats", "1", "--train-steps", "1",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines]
    kernels = {row[0]: row for row in rows if len(row) == 5 and row[1] == "1"}
    assert "pytorch" in kernels and len(kernels) >= 2  # a compiled kernel beside the fallback
    for row in kernels.values():
        assert float(row[2]) > 0 and float(row[4]) < 1e-4  # the kernels compute what the fallback does
    assert {row[0] for row in rows if row[0] in ("fp32", "bf16")} == {"fp32", "bf16"}
    assert "bf16 vs fp32 outputs: labels equal" in done.stdout
    speed = [row for row in rows if row[:2] == ["this project", "tiny"]]
    assert {row[2] for row in speed} == {"default", "streaming"}
    assert all(float(row[4]) > 0 and float(row[5]) > 0 for row in speed)  # s/frame, peak RSS MB
    training = [row for row in rows if row[0] == "tiny" and row[3] == "cpu"]
    assert [row[4] for row in training] == ["no", "yes"]  # a training step without, then with AMP
    assert all(float(row[6]) > 0 for row in training)  # s / step
