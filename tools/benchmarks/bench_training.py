#!/usr/bin/env python
"""Time MinVIS training steps and measure their peak memory.

    python tools/benchmarks/bench_training.py [--models tiny r50] [--batch B] [--warmup W]
        [--iters N] [--device cpu|cuda] [--threads T] [--amp | --no-amp]
    python tools/benchmarks/bench_training.py --vs-official [--rounds 2]

From scratch on 8 synthetic videos of 4 frames: ``tiny`` (160x128 frames; 8 per step, 3
untimed + 10 timed steps) and ``r50`` (the official R50 config at 640x360; 2 frames, 1 + 3).
A step of the project's ``Trainer`` with ``SOLVER.AMP.ENABLED`` as configured (R50 on, tiny
off) or as ``--amp``/``--no-amp`` set it (float16 on CUDA, bfloat16 on a CPU), each model
in a fresh process (its own peak RSS, data-loader workers apart).

``--vs-official``: the official release's training step beside this project's, fp32 and
bf16 (``source /tmp/minvis_official/env.sh`` first; ``../shared/official_baseline/``):
``train_step_run.py`` run by each release's Python from its own source tree (the R50
YouTube-VIS 2019 config, random weights, 1 video x 2 frames at 384x640, AdamW, 1 untimed +
2 timed steps, 2 threads), the three alternating for ``--rounds`` rounds; medians.
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import harness
import torch
from detectron2.utils.events import EventStorage

from minvis.config import build_config
from minvis.data.synthetic import SyntheticSpec, write_split
from minvis.engine import Trainer

# name -> frame (height, width), (frames per step, untimed steps, timed steps), config overrides
SETTINGS = {
    "tiny": ((128, 160), (8, 3, 10), []),
    "r50": ((360, 640), (2, 1, 3), ["INPUT.MIN_SIZE_TRAIN", "(360,)"]),
}


def measure(model: str, batch: int, warmup: int, iters: int, device: str, amp: list, output_dir: str) -> dict:
    """``warmup + iters`` training steps in this (fresh) process; seconds per timed step."""
    data = ["DATASETS.TRAIN", "('synthetic_ytvis_train',)", "SOLVER.IMS_PER_BATCH", batch]
    run = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "OUTPUT_DIR", output_dir]
    overrides = [*SETTINGS[model][2], *amp, *data, *run]
    cfg = build_config(str(harness.MODELS[model][0]), overrides, freeze=True)
    trainer, cuda, seconds = Trainer(cfg), device.startswith("cuda"), []
    with EventStorage(0):
        for trainer.iter in range(warmup + iters):
            start = time.perf_counter()
            trainer.run_step()
            if cuda:
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
    return {
        "amp": cfg.SOLVER.AMP.ENABLED,
        "s_per_iter": sum(seconds[warmup:]) / iters,
        "peak_rss_mb": harness.peak_rss_mb(),
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / harness.MB if cuda else None,
    }


STEP_RUN = Path(__file__).with_name("train_step_run.py")
STEP_RESULT = re.compile(r"RESULT s_per_step=([0-9.]+) peak_rss_mb=([0-9]+)")
STEP_CONFIG = "configs/youtubevis_2019/video_maskformer2_R50_bs32_8ep_frame.yaml"


def step_run(official: bool, amp: bool) -> tuple[float, ...]:
    """Seconds per step and peak RSS MB of one ``train_step_run.py`` process."""
    args = [STEP_CONFIG, 2, 384, 640, "INPUT.SAMPLING_FRAME_NUM", 2, "SOLVER.AMP.ENABLED", amp]
    return harness.run_release(official, STEP_RUN, args, STEP_RESULT, {"OMP_NUM_THREADS": "2"})

def vs_official(rounds: int) -> None:
    if not set(harness.OFFICIAL_ENV) <= set(os.environ):
        sys.exit("bench_training --vs-official: source /tmp/minvis_official/env.sh first")
    sides = {"official release, fp32": (True, False), "this project, fp32": (False, False),
             "this project, bf16 autocast": (False, True)}  # fmt: skip
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, (official, amp) in sides.items():
            runs[name].append(step_run(official, amp))
    print(f"{harness.machine_line()}; {STEP_CONFIG}, 2 frames at 384x640, {rounds} alternating rounds\n")
    reference, rows = median(s for s, _ in runs["official release, fp32"]), []
    for name, measured in runs.items():
        seconds, peak = [s for s, _ in measured], max(m for _, m in measured)
        rows.append([name, f"{median(seconds):.2f}", ", ".join(f"{s:.2f}" for s in seconds),
                     f"{reference / median(seconds):.2f}x", f"{peak:.0f}"])  # fmt: skip
    print(harness.table(["code", "s/step (median)", "rounds", "speed vs official", "peak RSS MB"], rows))


def main() -> None:
    parser = harness.make_parser(__doc__)
    parser.add_argument("--models", nargs="+", choices=sorted(SETTINGS), default=["tiny", "r50"])
    for name in ("batch", "warmup", "iters"):
        parser.add_argument(f"--{name}", type=int, help="(default: the model's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, help="SOLVER.AMP.ENABLED")
    parser.add_argument("--vs-official", action="store_true", help="the official release's step beside ours")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of --vs-official")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vs_official:
        vs_official(args.rounds)
        return
    if min(args.iters or 1, args.batch or 1, 1 + (args.warmup or 0)) < 1:
        parser.error("--iters and --batch must be >= 1, --warmup >= 0")
    if args.worker:
        print(json.dumps(measure(**json.loads(args.worker))))
        return
    torch.set_num_threads(args.threads)
    print(f"{harness.machine_line(args.device)}\n", flush=True)
    amp = [] if args.amp is None else ["SOLVER.AMP.ENABLED", args.amp]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            (height, width), defaults, _ = SETTINGS[model]
            given = (args.batch, args.warmup, args.iters)
            batch, warmup, iters = (d if g is None else g for g, d in zip(given, defaults, strict=True))
            write_split(Path(tmp, model, "synthetic_ytvis"), "train", 8, SyntheticSpec(4, height, width), 0)
            payload = {"model": model, "batch": batch, "warmup": warmup, "iters": iters, "amp": amp,
                       "device": args.device, "output_dir": str(Path(tmp, f"{model}_output"))}  # fmt: skip
            env = {"DETECTRON2_DATASETS": str(Path(tmp, model)), "OMP_NUM_THREADS": str(args.threads)}
            row = harness.run_worker(__file__, payload, env)
            seconds, rss, cuda = row["s_per_iter"], row["peak_rss_mb"], row["cuda_peak_mb"]
            rows.append([model, f"{height}x{width}", batch, args.device, row["amp"], iters, f"{seconds:.2f}",
                         f"{batch / seconds:.2f}", f"{rss:.0f}", f"{cuda:.0f}" if cuda else "-"])  # fmt: skip
    header = ["model", "input (HxW)", "frames per step", "device", "AMP", "timed steps", "s / step"]
    print(harness.table([*header, "frames / s", "peak RSS (MiB)", "peak CUDA (MiB)"], rows))


if __name__ == "__main__":
    main()
