#!/usr/bin/env python
"""The evaluation CLI, whole processes, beside the official evaluator; the metric alone.

    python tools/benchmarks/bench_eval.py [--videos 300] [--predictions 840] [--repeats 5]

A deterministic YouTube-VIS-sized case (360x640 videos, 40 classes, elliptic blobs moving
and growing over spans of frames, uncompressed ground-truth RLE as in the official files,
noisy copies of the tracks plus false positives as predictions) written by a child process
(Linux reports a child's peak RSS as at least its parent's RSS at the fork), then scored
by whole processes as a user runs them (byte-code cache on, one warm-up run each),
alternating: ``tools/eval/eval_results.py`` and, after ``source /tmp/minvis_official/env.sh``,
the official ``ytvoseval`` (``../shared/official_baseline/eval_cli.py``). Wall, CPU (user +
system) and peak RSS from ``os.wait4``, medians; last, this project's metric in-process.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import harness
import numpy as np
from pycocotools import mask as mask_utils

from minvis.evaluation.ytvis_metric import evaluate_ytvis

Blob = np.ndarray  # [centre y, centre x, radius y, radius x]
CASE_ARGS = ("videos", "classes", "frames", "predictions")
FIELDS = (("wall", 2), ("cpu", 2), ("rss", 0))  # run_process's, with the digits the table shows


def ellipse_rle(height: int, width: int, blob: Blob) -> dict[str, Any] | None:
    """Uncompressed (column-major) RLE of an axis-aligned ellipse; None if off-frame."""
    cy, cx, ry, rx = blob
    x = np.arange(max(0, int(cx - rx)), min(width, int(cx + rx) + 1))
    half = ry * np.sqrt(np.clip(1.0 - ((x + 0.5 - cx) / rx) ** 2, 0.0, None))
    top = np.clip(np.rint(cy - half), 0, height).astype(np.int64)
    bottom = np.clip(np.rint(cy + half), 0, height).astype(np.int64)
    keep = bottom > top
    if not keep.any():
        return None
    starts, ends = x[keep] * height + top[keep], x[keep] * height + bottom[keep]
    joined = starts[1:] == ends[:-1]  # a run ending at a column's bottom continues
    starts, ends = starts[np.concatenate([[True], ~joined])], ends[np.concatenate([~joined, [True]])]
    bounds = np.concatenate([[0], np.stack([starts, ends], axis=1).ravel(), [height * width]])
    return {"size": [height, width], "counts": np.diff(bounds).tolist()}


def compressed(rle: dict[str, Any] | None) -> dict[str, Any] | None:
    if rle is None:
        return None
    counts = mask_utils.frPyObjects(rle, *rle["size"])["counts"]
    return {"size": rle["size"], "counts": counts.decode("ascii")}


def random_track(rng: np.random.Generator, height: int, width: int, frames: int) -> list[Blob | None]:
    """A blob moving and growing linearly over a random span of frames."""
    radius = height * rng.uniform(0.02, 0.3)
    start = np.array([rng.uniform(0, height), rng.uniform(0, width), radius, radius * rng.uniform(0.5, 2)])
    velocity = np.array([*rng.normal(0, height / 100, 2), *rng.normal(0, radius / 100, 2)])
    first, last = sorted(rng.integers(0, frames, 2))
    first, last = (0, frames - 1) if rng.random() < 0.5 else (first, last)
    return [start + velocity * t if first <= t <= last else None for t in range(frames)]


def noisy_copy(rng: np.random.Generator, track: list[Blob | None]) -> list[Blob | None]:
    """The track shifted by a fraction of its radii, rescaled, with a few frames dropped."""
    shift = np.array([*rng.normal(0, 0.15, 2), 0.0, 0.0])
    scale = np.array([1.0, 1.0, *[rng.uniform(0.8, 1.25)] * 2])
    return [None if b is None or rng.random() < 0.05 else (b + shift * b[[2, 3, 2, 3]]) * scale
            for b in track]  # fmt: skip


def synthetic_case(videos: int, classes: int, frames: int, predictions: int, seed: int = 0) -> tuple:
    """Ground truth and results (see the module docstring)."""
    rng, (height, width) = np.random.default_rng(seed), (360, 640)
    gt: dict[str, list] = {"videos": [], "annotations": []}
    gt["categories"] = [{"id": c, "name": f"class{c}"} for c in range(1, classes + 1)]
    results, per_video = [], np.full(videos, predictions // videos)
    per_video[: predictions % videos] += 1
    for vid in range(1, videos + 1):
        gt["videos"].append({"id": vid, "height": height, "width": width, "length": frames})
        tracks = [random_track(rng, height, width, frames) for _ in range(rng.integers(1, 4))]
        labels = rng.integers(1, classes + 1, len(tracks))
        for track, category in zip(tracks, labels, strict=True):
            rles = [None if b is None else ellipse_rle(height, width, b) for b in track]
            areas = [None if r is None else float(sum(r["counts"][1::2])) for r in rles]
            annotation = {"id": len(gt["annotations"]) + 1, "video_id": vid, "category_id": int(category)}
            gt["annotations"].append({**annotation, "iscrowd": 0, "segmentations": rles, "areas": areas})
        for k in range(per_video[vid - 1]):
            matched = k < len(tracks)
            track = noisy_copy(rng, tracks[k]) if matched else random_track(rng, height, width, frames)
            category = labels[k] if matched and rng.random() < 0.8 else rng.integers(1, classes + 1)
            score = float(rng.uniform(0.3, 1.0) if matched else rng.uniform(0.0, 0.7))
            masks = [None if b is None else compressed(ellipse_rle(height, width, b)) for b in track]
            result = {"video_id": vid, "category_id": int(category), "score": score}
            results.append({**result, "segmentations": masks})
    return gt, results


def run_process(command: list[str], env: dict[str, str], ap_pattern: str) -> dict[str, float]:
    """Run ``command`` to completion: wall and CPU seconds, peak RSS and the AP it printed."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # reaped here, so its own rusage
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        output, errors = out.read(), err.read()
    match = re.search(ap_pattern, output, re.MULTILINE)
    if os.waitstatus_to_exitcode(status) != 0 or match is None:
        sys.exit(f"bench_eval: {command[1]} failed:\n{output}\n{errors}")
    return {"wall": seconds, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024,
            "ap": float(match.group(1))}  # fmt: skip


def evaluators(gt: Path, results: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """Name -> command, environment and the pattern of the AP it prints."""
    # As on a user's machine, Python caches compiled modules (this sandbox turns that off).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    ours = [sys.executable, str(harness.REPO / "tools" / "eval" / "eval_results.py")]
    ours += ["--gt", str(gt), "--results", str(results)]
    found = {"this project (`tools/eval/eval_results.py`)": (ours, env, r"^AP\s+(-?[0-9.]+)")}
    if "OFFICIAL_PY" in os.environ and "OFFICIAL_EVAL_PATH" in os.environ:
        cli = harness.SHARED / "official_baseline" / "eval_cli.py"
        official_env = {**env, "PYTHONPATH": os.environ["OFFICIAL_EVAL_PATH"]}
        command = [os.environ["OFFICIAL_PY"], str(cli), str(gt), str(results)]
        found["official (`ytvoseval`)"] = (command, official_env, r"^AP (-?[0-9.eE-]+)")
    return found


def main() -> None:
    parser = harness.make_parser(__doc__)
    for name, default in zip(CASE_ARGS, (300, 40, 36, 840), strict=True):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write-case", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.write_case:
        case = synthetic_case(*(getattr(args, name) for name in CASE_ARGS))
        for name, value in zip(("gt", "results"), case, strict=True):
            Path(args.write_case, f"{name}.json").write_text(json.dumps(value))
        return
    with tempfile.TemporaryDirectory() as tmp:
        forwarded = [f"--{name}={getattr(args, name)}" for name in CASE_ARGS]
        subprocess.run([sys.executable, __file__, *forwarded, f"--write-case={tmp}"], check=True)
        gt_path, results_path = Path(tmp, "gt.json"), Path(tmp, "results.json")
        commands = evaluators(gt_path, results_path)
        runs = {name: [run_process(*command)] for name, command in commands.items()}  # warm-up
        for _ in range(args.repeats):  # alternating, so that both see the same machine load
            for name, command in commands.items():
                runs[name].append(run_process(*command))
        gt, results = json.loads(gt_path.read_text()), json.loads(results_path.read_text())
    rows = [[name, *(f"{median(r[key] for r in measured[1:]):.{digits}f}" for key, digits in FIELDS),
             f"{measured[0]['ap']:.4f}"] for name, measured in runs.items()]  # fmt: skip
    start, cpu_start = time.perf_counter(), time.process_time()
    ap = evaluate_ytvis(gt, results).stats["AP"]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rows.append(["this project's metric alone, in process", f"{wall:.2f}", f"{cpu:.2f}", "", f"{ap:.4f}"])
    print(f"{harness.machine_line()}\nCase: {args.videos} videos x {args.frames} frames at 360x640, "
          f"{args.classes} classes, {len(gt['annotations'])} ground-truth tracks, {len(results)} "
          f"predictions; medians of {args.repeats} alternating runs after a warm-up run\n")  # fmt: skip
    print(harness.table(["evaluator", "wall (s)", "CPU (s)", "peak RSS (MB)", "AP"], rows))
    if len(commands) == 1:
        print("\n(official evaluator not measured: source /tmp/minvis_official/env.sh first)")


if __name__ == "__main__":
    main()
