#!/usr/bin/env python
"""The default video call, side by side with the official MinVIS release, in one run.

    source /tmp/minvis_official/env.sh   # ../shared/official_baseline/README.md builds it
    python tools/benchmarks/benchmark_vs_official.py [--frames 30 120] [--official-frames 30]
        [--repeats 2] [--height 360] [--width 640] [--config CONFIG]

Both sides run ``../shared/official_baseline/infer_run.py`` as whole processes on the same
weights (this project's model built from ``--config`` with seed 0, saved with its state-dict
metadata): ``model([{"image": frames, "height": H, "width": W}])`` on a synthetic video
with 2 threads, reporting seconds per frame and peak RSS. Runs alternate (ours, official,
ours, official, ...) so both see the same machine load; the table gives medians. The
official code runs on its CPU paths (pure-PyTorch MSDeformAttn). Outputs of the two are
compared at every length both ran: labels, max score difference, min mask IoU of
instances paired by (label, score).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from detectron2.modeling import build_model
from machine_info import cpu_name

from minvis.config import build_config

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO.parent / "shared" / "official_baseline" / "infer_run.py"
DEFAULT_CONFIG = Path("configs/youtubevis_2019/video_maskformer2_R50_bs32_8ep_frame.yaml")
RESULT = re.compile(r"RESULT seconds=([0-9.]+) per_frame_ms=([0-9.]+) peak_rss_mb=([0-9]+)")


def save_weights(config: Path, path: Path) -> None:
    """The project's model from ``config`` (seed 0), with the metadata both loaders expect."""
    torch.manual_seed(0)
    model = build_model(build_config(str(REPO / config), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"]))
    torch.save(model.state_dict(), path)


def infer(side: str, config: Path, weights: Path, frames: int, size: tuple[int, int], out: Path) -> dict:
    """Run the official runner for ``side`` (ours / official); per-frame ms and peak RSS MB."""
    args = [str(config), str(weights), str(frames), str(size[0]), str(size[1]), str(out), "MODEL.WEIGHTS", ""]
    if side == "ours":
        command, cwd, env = [sys.executable, str(RUNNER), *args], REPO, dict(os.environ)
    else:
        command = [os.environ["OFFICIAL_PY"], str(RUNNER), *args]
        cwd, env = Path(os.environ["OFFICIAL_SRC"]), {**os.environ, "PYTHONPATH": os.environ["OFFICIAL_PATH"]}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    match = RESULT.search(done.stdout)
    if done.returncode != 0 or match is None:
        sys.exit(f"benchmark_vs_official: {side} at {frames} frames failed:\n{done.stderr[-3000:]}")
    return {"per_frame_ms": float(match.group(2)), "peak_rss_mb": float(match.group(3))}


def compare(ours: Path, official: Path) -> str:
    a, b = torch.load(ours, weights_only=True), torch.load(official, weights_only=True)
    unmatched = list(range(len(b["pred_scores"])))
    score_diff, min_iou = 0.0, 1.0
    for score, label, mask in zip(a["pred_scores"], a["pred_labels"], a["pred_masks"], strict=True):
        same = [j for j in unmatched if b["pred_labels"][j] == label] or unmatched
        j = min(same, key=lambda j: abs(b["pred_scores"][j] - score))
        unmatched.remove(j)
        score_diff = max(score_diff, abs(b["pred_scores"][j] - score))
        union = (mask | b["pred_masks"][j]).sum().item()
        min_iou = min(min_iou, 1.0 if union == 0 else (mask & b["pred_masks"][j]).sum().item() / union)
    labels_equal = sorted(a["pred_labels"]) == sorted(b["pred_labels"])
    return f"labels equal {labels_equal}, max score difference {score_diff:.1e}, min mask IoU {min_iou:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="relative to the repository")
    parser.add_argument("--frames", type=int, nargs="+", default=[30, 120], help="lengths for ours")
    parser.add_argument("--official-frames", type=int, nargs="*", default=[30], help="lengths, official")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    args = parser.parse_args()
    if args.official_frames and not {"OFFICIAL_PY", "OFFICIAL_SRC", "OFFICIAL_PATH"} <= set(os.environ):
        sys.exit("benchmark_vs_official: source /tmp/minvis_official/env.sh first (or --official-frames)")
    size = (args.height, args.width)
    runs: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pth"
        save_weights(args.config, weights)
        schedule = [
            (side, frames)
            for frames in sorted(set(args.frames) | set(args.official_frames))
            for side, lengths in (("ours", args.frames), ("official", args.official_frames))
            if frames in lengths
        ]
        for _ in range(args.repeats):
            for side, frames in schedule:
                out = Path(tmp) / f"{side}_{frames}.pth"
                measured = infer(side, args.config, weights, frames, size, out)
                runs.setdefault((side, frames), []).append(measured)
                print(f"{side} {frames} frames: {measured}", file=sys.stderr, flush=True)
        comparisons = {
            frames: compare(Path(tmp) / f"ours_{frames}.pth", Path(tmp) / f"official_{frames}.pth")
            for frames in set(args.frames) & set(args.official_frames)
        }
    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}; {args.config}, "
        f"{args.height}x{args.width}, 2 threads, medians of {args.repeats} alternating runs; load average "
        f"{os.getloadavg()[0]:.1f} at the end\n"
    )
    print("| code | frames | s/frame | peak RSS MB | peak vs shortest video |")
    print("|---|---:|---:|---:|---:|")
    for side in ("ours", "official"):
        shortest = None
        for (name, frames), measured in sorted(runs.items(), key=lambda item: item[0][1]):
            if name != side:
                continue
            per_frame = statistics.median(r["per_frame_ms"] for r in measured) / 1e3
            peak = statistics.median(r["peak_rss_mb"] for r in measured)
            shortest = shortest or peak
            label = "this project" if side == "ours" else "official release"
            print(f"| {label} | {frames} | {per_frame:.2f} | {peak:.0f} | {peak / shortest:.2f}x |")
    for frames, text in sorted(comparisons.items()):
        print(f"\nOutputs at {frames} frames, ours vs official: {text}")


if __name__ == "__main__":
    main()
