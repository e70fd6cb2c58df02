"""The fp32/bf16 benchmark stays runnable: on the tiny config it times both precisions in turn."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "tools" / "benchmarks" / "benchmark_precision.py"
TINY_CONFIG = REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"


def test_tiny_run_prints_both_precisions() -> None:
    command = [
        sys.executable, str(BENCHMARK), "--config", str(TINY_CONFIG),
        "--frames", "2", "--repeats", "2", "--height", "64", "--width", "96",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = [line.split("|") for line in done.stdout.splitlines() if line.startswith(("| fp32", "| bf16"))]
    assert [cells[1].strip() for cells in table] == ["fp32", "bf16"]
    for cells in table:
        assert float(cells[2]) > 0 and len(cells[3].split(",")) == 2  # median and both runs
    assert "bf16 speed-up:" in done.stdout
