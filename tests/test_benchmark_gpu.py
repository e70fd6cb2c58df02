"""The CUDA benchmark stays runnable: its CPU dry run prints all three tables.

No GPU here; ``--device cpu`` runs the same code (bfloat16 autocast instead of float16).
"""

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "tools" / "benchmarks" / "benchmark_gpu.py"


def test_cpu_dry_run_prints_every_table() -> None:
    command = [
        sys.executable, str(BENCHMARK), "--device", "cpu", "--models", "tiny", "--frames", "2",
        "--deviation-frames", "2", "--repeats", "1",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    compiled, fallback = (line for line in out.splitlines() if line.startswith(("| compiled", "| pytorch")))
    assert float(compiled.split("|")[2]) > 0 and float(fallback.split("|")[2]) > 0
    relative = out.split("max |compiled - pytorch| / max |pytorch|: output ")[1]
    assert float(relative.split(",")[0]) < 1e-5  # the kernel computes what the fallback does
    assert "| torch.bfloat16 autocast vs float32 |" in out
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert {row.split("|")[2].strip() for row in rows} == {"default", "streaming"}
