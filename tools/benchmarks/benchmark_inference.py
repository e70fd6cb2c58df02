#!/usr/bin/env python
"""Time MinVIS inference and measure its peak memory against the video length.

    python tools/benchmarks/benchmark_inference.py [--models tiny r50 swinl] [--frames 30 120 480]
        [--r50-frames 30] [--sources vtest synthetic] [--paths default paper paper-bounded streaming]
        [--min-size 360] [--score-threshold 0] [--device cpu|cuda]

Models (random weights, ``MODEL.WEIGHTS ""``): ``tiny`` (configs/tiny), ``r50`` and
``swinl`` (the official YouTube-VIS 2019 R50 and Swin-L configs; ``swinl`` takes the
``--r50-*`` lengths and sources), all at ``INPUT.MIN_SIZE_TEST`` ``--min-size`` (0: each
config's own, the official test sizes: 360 for R50, 480 for Swin-L). Sources:
the first N frames of shared/data/vtest.avi (768x576 -> 480x360) and a synthetic video
rendered at 480x360 (:mod:`minvis.data.synthetic`, written once to a temporary mp4).
Paths:

* ``default``: ``model([{"image": [all frames], ...}])`` with the config's own inference
  settings (the official configs: no window inference, so one frame per forward).

and, all with ``WINDOW_INFERENCE`` True:

* ``paper``: the official contract, ``model([{"image": [all frames], ...}])``: every
  preprocessed frame is decoded into a list first, the per-frame mask logits are kept in
  memory and the output holds dense ``[T, H, W]`` masks.
* ``paper-bounded``: the same results as the evaluator gets them: frames fed by a
  generator, ``SPILL_MASKS_TO_DISK``, ``model.track_video`` and masks encoded to RLE one
  frame at a time instead of dense masks.
* ``streaming``: :class:`minvis.predictor.VideoPredictor`, one frame at a time; latency
  is the time between two yielded frames (decode + model + tracking + full-size masks).

Every configuration runs in a fresh subprocess, so its peak RSS (``VmHWM``) is its own;
"RSS ready" is the RSS after the model is built, before the first frame. On CUDA the
peak allocated CUDA memory is reported too. Prints a markdown table and the machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from machine_info import machine_line

from minvis.config import build_config
from minvis.data.synthetic import SyntheticSpec, render_video, video_rng, write_video_file
from minvis.data.video_io import open_frame_source
from minvis.predictor import VideoPredictor
from minvis.ytvis_format import encode_masks

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    "tiny": REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml",
    "r50": REPO / "configs" / "youtubevis_2019" / "video_maskformer2_R50_bs32_8ep_frame.yaml",
    "swinl": REPO / "configs" / "youtubevis_2019" / "swin"
    / "video_maskformer2_swin_large_IN21k_384_bs32_8ep_frame.yaml",
}
VTEST = REPO.parent / "shared" / "data" / "vtest.avi"
PATHS = ("default", "paper", "paper-bounded", "streaming")
MB = 2**20


@dataclass(frozen=True)
class Run:
    model: str
    path: str
    source: str
    video: str
    frames: int
    min_size: int
    score_threshold: float
    device: str
    threads: int


def build_predictor(run: Run) -> VideoPredictor:
    overrides = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", run.device]
    if run.min_size > 0:
        overrides += ["INPUT.MIN_SIZE_TEST", run.min_size]
    if run.path != "default":
        overrides += [
            "MODEL.MASK_FORMER.TEST.WINDOW_INFERENCE", True,
            "MODEL.MASK_FORMER.TEST.SPILL_MASKS_TO_DISK", run.path == "paper-bounded",
        ]  # fmt: skip
    cfg = build_config(str(CONFIGS[run.model]), overrides)
    return VideoPredictor.from_config(cfg, score_threshold=run.score_threshold)


def measure(run: Run) -> dict[str, Any]:
    """Run one configuration in this process; returns its timings and memory."""
    torch.manual_seed(0)
    torch.set_num_threads(run.threads)
    predictor = build_predictor(run)
    source = open_frame_source(run.video)
    if (source.info.num_frames or 0) < run.frames:
        raise ValueError(f"{run.video} has {source.info.num_frames} frames, fewer than {run.frames}")
    frames = itertools.islice(source, run.frames)
    rss_ready = psutil.Process().memory_info().rss
    latencies, instances = [], 0
    start = time.perf_counter()
    if run.path == "streaming":
        last = start
        for result in predictor(frames):
            now = time.perf_counter()
            latencies.append(now - last)
            instances += len(result.track_ids)
            last = now
    else:
        preprocessed = (predictor.preprocess(frame) for frame in frames)
        video = {
            "image": list(preprocessed) if run.path in ("default", "paper") else preprocessed,
            "height": source.info.height,
            "width": source.info.width,
        }
        if run.path in ("default", "paper"):
            scores = predictor.model([video])["pred_scores"]
        else:
            result = predictor.model.track_video(video)
            for frame_masks in result.frame_masks():
                encode_masks(frame_masks.numpy())
            scores = result.scores
        instances = len(scores) * run.frames  # the top-k instances span every frame
    seconds = time.perf_counter() - start
    cuda = run.device.startswith("cuda")
    return {
        **asdict(run),
        "seconds": seconds,
        "ms_per_frame": 1e3 * seconds / run.frames,
        "latency_ms": 1e3 * float(np.mean(latencies[1:])) if len(latencies) > 1 else None,
        "instances_per_frame": instances / run.frames,
        "rss_ready_mb": rss_ready / MB,
        "peak_rss_mb": peak_rss() / MB,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / MB if cuda else None,
    }


def peak_rss() -> int:
    """Peak RSS of this process in bytes.

    Linux's ``VmHWM`` belongs to the process image, whereas ``ru_maxrss`` survives fork and
    exec: a worker would report its parent's peak (e.g. after rendering the synthetic video).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_in_subprocess(run: Run) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", json.dumps(asdict(run))]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    if done.returncode != 0:
        raise RuntimeError(f"{run} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def synthetic_video(folder: Path, frames: int) -> Path:
    """A synthetic 480x360 video of ``frames`` frames, written to ``folder``."""
    spec = SyntheticSpec(num_frames=frames, height=360, width=480)
    path = folder / f"synthetic_{frames}.mp4"
    write_video_file(path, render_video(video_rng(0, "benchmark", 0), spec).frames, fps=10.0)
    return path


def table(rows: list[dict[str, Any]]) -> str:
    def fmt(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "| model | path | source | frames | total s | ms/frame | frames/s | latency ms | inst/frame "
        "| RSS ready MB | peak RSS MB | peak / shortest-video peak | CUDA peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        shortest = min(
            (
                r
                for r in rows
                if (r["model"], r["path"], r["source"]) == (row["model"], row["path"], row["source"])
            ),
            key=lambda r: r["frames"],
        )
        lines.append(
            f"| {row['model']} | {row['path']} | {row['source']} | {row['frames']} | {row['seconds']:.1f} "
            f"| {row['ms_per_frame']:.0f} | {row['frames'] / row['seconds']:.2f} | {fmt(row['latency_ms'])} "
            f"| {row['instances_per_frame']:.1f} | {row['rss_ready_mb']:.0f} | {row['peak_rss_mb']:.0f} "
            f"| {row['peak_rss_mb'] / shortest['peak_rss_mb']:.2f} (vs {shortest['frames']}) "
            f"| {fmt(row['cuda_peak_mb'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=["tiny", "r50"])
    parser.add_argument(
        "--frames", type=int, nargs="+", default=[30, 120, 480], help="video lengths (tiny)"
    )
    parser.add_argument(
        "--r50-frames",
        type=int,
        nargs="+",
        default=[30],
        help="video lengths for r50 (~3 s/frame on a CPU)",
    )
    parser.add_argument(
        "--sources", nargs="+", choices=["vtest", "synthetic"], default=["vtest", "synthetic"]
    )
    parser.add_argument("--r50-sources", nargs="+", choices=["vtest", "synthetic"], default=["vtest"])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS[1:]))
    parser.add_argument("--min-size", type=int, default=360, help="INPUT.MIN_SIZE_TEST (0: the config's)")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="streaming: tracks shown")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads per run"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(Run(**json.loads(args.worker)))))
        return

    print(f"{machine_line(args.device)}; {args.threads} torch thread(s) per run\n", flush=True)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        lengths = {"tiny": args.frames, "r50": args.r50_frames, "swinl": args.r50_frames}
        sources = {"tiny": args.sources, "r50": args.r50_sources, "swinl": args.r50_sources}
        videos = {"vtest": str(VTEST)}
        synthetic_lengths = [n for m in args.models if "synthetic" in sources[m] for n in lengths[m]]
        if synthetic_lengths:
            videos["synthetic"] = str(synthetic_video(Path(tmp), max(synthetic_lengths)))
        for model in args.models:
            for source, path, frames in itertools.product(sources[model], args.paths, lengths[model]):
                run = Run(
                    model=model,
                    path=path,
                    source=source,
                    video=videos[source],
                    frames=frames,
                    min_size=args.min_size,
                    score_threshold=args.score_threshold,
                    device=args.device,
                    threads=args.threads,
                )
                rows.append(run_in_subprocess(run))
                print(
                    f"{model} {path} {source} {frames}: {rows[-1]['seconds']:.1f} s, "
                    f"peak RSS {rows[-1]['peak_rss_mb']:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
    print(table(rows))
    print(f"\nTotal {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
