#!/usr/bin/env python
"""Whole-process wall time and peak memory of the evaluation CLI, side by side with the official one.

    python tools/benchmarks/benchmark_eval_cli.py [--videos 300] [--predictions 840] [--repeats 5]

Writes a YouTube-VIS-sized case (360x640 videos, 40 classes; see ``benchmark_eval.py``)
to a temporary folder, then scores it alternately with this project's
``tools/eval/eval_results.py`` and, when ``source /tmp/minvis_official/env.sh`` has set
``OFFICIAL_PY`` and ``OFFICIAL_EVAL_PATH``, with the official ``ytvoseval`` through
``../shared/official_baseline/eval_cli.py``. Each run is a fresh process, as a user runs
it (compiled modules cached, after one warm-up run of each); its wall time, CPU time
(user + system: steadier than wall on a loaded machine) and peak RSS come from
``os.wait4``. Prints a markdown table of medians
and checks that both report the same AP. The case is written by a child process, so
that this process stays small: Linux reports a child's peak RSS as at least the
parent's RSS at the fork.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmark_eval import synthetic_case
from machine_info import cpu_name

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_CLI = REPO.parent / "shared" / "official_baseline" / "eval_cli.py"


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_seconds: float  # user + system time of the process
    peak_rss_mb: float
    ap: float


def run_process(command: list[str], env: dict[str, str], ap_pattern: str) -> Run:
    """Run ``command`` to completion; wall time, CPU time (user + system), peak RSS
    (``ru_maxrss``) and the AP it printed."""
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # reaped here, so its own rusage
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read(), stderr.read()
    if process.returncode != 0:
        sys.exit(f"benchmark_eval_cli: {command[1]} failed:\n{errors}")
    match = re.search(ap_pattern, output, re.MULTILINE)
    if match is None:
        sys.exit(f"benchmark_eval_cli: no AP in the output of {command[1]}:\n{output}")
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, float(match.group(1)))


def write_case(args: argparse.Namespace, folder: Path) -> None:
    gt, results = synthetic_case(
        args.videos, args.classes, args.frames, args.predictions, args.seed, sizes=((360, 640),)
    )
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "results.json").write_text(json.dumps(results))
    sizes = {"tracks": len(gt["annotations"]), "predictions": len(results)}
    (folder / "case.json").write_text(json.dumps(sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--predictions", type=int, default=840)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-case", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()

    case_args = [f"--{k}={getattr(args, k)}" for k in ("videos", "classes", "frames", "predictions", "seed")]
    if args.write_case is not None:
        write_case(args, args.write_case)
        return
    official_py, official_path = os.environ.get("OFFICIAL_PY"), os.environ.get("OFFICIAL_EVAL_PATH")
    # As on a user's machine, Python caches compiled modules (this sandbox turns that off).
    user_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, results_path = Path(tmp) / "gt.json", Path(tmp) / "results.json"
        subprocess.run([sys.executable, __file__, *case_args, f"--write-case={tmp}"], check=True)
        case = json.loads((Path(tmp) / "case.json").read_text())
        commands = {
            "this project (tools/eval/eval_results.py)": (
                [sys.executable, str(REPO / "tools/eval/eval_results.py"), "--gt", str(gt_path),
                 "--results", str(results_path)],
                user_env,
                r"^AP\s+(-?[0-9.]+)",
            )
        }
        if official_py and official_path:
            commands["official (ytvoseval)"] = (
                [official_py, str(OFFICIAL_CLI), str(gt_path), str(results_path)],
                {**user_env, "PYTHONPATH": official_path},
                r"^AP (-?[0-9.eE-]+)",
            )
        for command, env, pattern in commands.values():  # warm-up: byte-code caches, file cache
            run_process(command, env, pattern)
        runs: dict[str, list[Run]] = {name: [] for name in commands}
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            for name, (command, env, pattern) in commands.items():
                runs[name].append(run_process(command, env, pattern))

    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs. Case: {args.videos} videos x {args.frames} "
        f"frames at 360x640, {args.classes} classes, {case['tracks']} ground-truth tracks, "
        f"{case['predictions']} predictions. Median of {args.repeats} alternating whole-process runs.\n"
    )
    print("| evaluator | wall (s) | CPU (s) | peak RSS (MB) | AP |")
    print("|---|---:|---:|---:|---:|")
    for name, measured in runs.items():
        wall = statistics.median(r.seconds for r in measured)
        cpu = statistics.median(r.cpu_seconds for r in measured)
        peak = statistics.median(r.peak_rss_mb for r in measured)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {peak:.0f} | {measured[0].ap:.4f} |")
    if len(runs) == 1:
        print("\n(official evaluator not measured: source /tmp/minvis_official/env.sh first)")
    else:
        aps = {round(m[0].ap, 4) for m in runs.values()}
        print(f"\nSame AP from both: {'yes' if len(aps) == 1 else 'NO'}")


if __name__ == "__main__":
    main()
