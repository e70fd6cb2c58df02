#!/usr/bin/env python
"""Time MinVIS training iterations and measure their peak memory.

    python tools/benchmarks/benchmark_training.py [--models tiny r50] [--batch B] [--warmup W]
        [--iters N] [--device cpu|cuda] [--threads T]

Models, trained from scratch (``MODEL.WEIGHTS ""``) on synthetic videos
(:mod:`minvis.data.synthetic`, written to a temporary ``$DETECTRON2_DATASETS``):

* ``tiny``: configs/tiny at its own input size (160x128 frames, shortest edge 128);
* ``r50``: the official YouTube-VIS 2019 R50 config (40 classes, 100 queries, 12544
  points) on 640x360 frames with ``INPUT.MIN_SIZE_TRAIN (360,)``.

An iteration is one step of the project's ``Trainer`` (its model, optimizer, data
loader, and AMP on CUDA when the config enables it); batch size and iteration counts
default per model (tiny: 8 frames, 3 + 10 iterations; r50: 2 frames, 1 + 3 iterations),
the warm-up iterations are not timed. Every model runs in a fresh subprocess, so the peak RSS
(``ru_maxrss`` of the training process; data-loader workers excluded) is its own. On
CUDA the peak allocated CUDA memory is reported too. Prints a markdown table and the
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from detectron2.utils.events import EventStorage
from machine_info import machine_line

from minvis.config import build_config
from minvis.data.synthetic import SyntheticSpec, write_split
from minvis.engine import Trainer

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Model:
    config: Path
    height: int  # of the synthetic frames (and of the network input)
    width: int
    batch: int  # frames per iteration
    warmup: int  # untimed iterations
    iters: int  # timed iterations
    overrides: tuple = ()


MODELS = {
    "tiny": Model(
        REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml",
        height=128,
        width=160,
        batch=8,
        warmup=3,
        iters=10,
    ),
    "r50": Model(
        REPO / "configs" / "youtubevis_2019" / "video_maskformer2_R50_bs32_8ep_frame.yaml",
        height=360,
        width=640,
        batch=2,
        warmup=1,
        iters=3,
        overrides=("INPUT.MIN_SIZE_TRAIN", "(360,)"),
    ),
}
MB = 2**20


def write_dataset(root: Path, height: int, width: int) -> None:
    """``root/synthetic_ytvis/train``: 8 videos of 4 frames."""
    write_split(root / "synthetic_ytvis", "train", 8, SyntheticSpec(4, height, width), seed=0)


def measure(model: Model, device: str, output_dir: str) -> dict[str, Any]:
    """Run ``model.warmup + model.iters`` training steps in this process; time the last ``iters``."""
    cfg = build_config(
        str(model.config),
        [
            *model.overrides,
            *["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "SOLVER.IMS_PER_BATCH", model.batch],
            *["DATASETS.TRAIN", "('synthetic_ytvis_train',)", "OUTPUT_DIR", output_dir],
        ],
        freeze=True,
    )
    trainer = Trainer(cfg)
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    with EventStorage(0):
        for trainer.iter in range(model.warmup + model.iters):
            if trainer.iter == model.warmup:
                synchronize()
                if device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
            trainer.run_step()
        synchronize()
    seconds = (time.perf_counter() - start) / model.iters
    cuda_peak = torch.cuda.max_memory_allocated() / MB if device.startswith("cuda") else None
    return {
        "s_per_iter": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB,
        "cuda_peak_mb": cuda_peak,
    }


def chosen_model(name: str, args: argparse.Namespace) -> Model:
    """``MODELS[name]`` with the batch size and iteration counts given on the command line."""
    chosen = {"batch": args.batch, "warmup": args.warmup, "iters": args.iters}
    return replace(MODELS[name], **{key: value for key, value in chosen.items() if value is not None})


def run_worker(name: str, args: argparse.Namespace, datasets: Path, output_dir: Path) -> dict:
    """``measure`` in a fresh process; its result dict."""
    forwarded = [
        f"--{key}={value}"
        for key in ("batch", "warmup", "iters", "device")
        if (value := getattr(args, key)) is not None
    ]
    command = [sys.executable, __file__, "--worker", name, "--output-dir", str(output_dir), *forwarded]
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets), "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["tiny", "r50"])
    parser.add_argument("--batch", type=int, help="frames per iteration (default: tiny 8, r50 2)")
    parser.add_argument("--warmup", type=int, help="untimed iterations (default: tiny 3, r50 1)")
    parser.add_argument("--iters", type=int, help="timed iterations (default: tiny 10, r50 3)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if (args.iters is not None and args.iters < 1) or (args.warmup is not None and args.warmup < 0):
        parser.error("--iters must be >= 1 and --warmup >= 0")
    if args.worker:
        print(json.dumps(measure(chosen_model(args.worker, args), args.device, args.output_dir)))
        return

    print(f"{machine_line(args.device)}; {args.threads} torch thread(s)\n", flush=True)
    print("| model | input (HxW) | frames per iteration | device | timed iterations | s / iteration "
          "| iterations / s | frames / s | peak RSS (MiB) | peak CUDA (MiB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = chosen_model(name, args)
            datasets = Path(tmp, name)
            write_dataset(datasets, model.height, model.width)
            row = run_worker(name, args, datasets, Path(tmp, f"{name}_output"))
            seconds = row["s_per_iter"]
            cuda = "-" if row["cuda_peak_mb"] is None else f"{row['cuda_peak_mb']:.0f}"
            print(
                f"| {name} | {model.height}x{model.width} | {model.batch} | {args.device} | {model.iters} "
                f"| {seconds:.2f} | {1 / seconds:.3f} | {model.batch / seconds:.2f} "
                f"| {row['peak_rss_mb']:.0f} | {cuda} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
