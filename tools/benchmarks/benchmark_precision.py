#!/usr/bin/env python
"""fp32 against bf16 inference on CPU, alternating in one process.

    python tools/benchmarks/benchmark_precision.py [--config CFG] [--frames 4] [--repeats 4]
        [--height 360] [--width 640] [--threads 2]

Builds the model of ``--config`` twice with the same random weights (seed 0), once with
``MODEL.MASK_FORMER.TEST.PRECISION fp32`` and once with ``bf16``, and times the default
call ``model([{"image": frames, ...}])`` on one synthetic video with the two models in
turn, so that both see the same machine load (this VM's speed swings by 2x within minutes,
which makes two separate runs of ``profile_model.py`` an unfair comparison). Prints a
markdown table of seconds per frame and the speed-up per alternating pair.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from detectron2.modeling import build_model

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # this checkout's packages, not an installed copy
from machine_info import cpu_name  # noqa: E402

from minvis.config import build_config  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "youtubevis_2019" / "video_maskformer2_R50_bs32_8ep_frame.yaml"
PRECISIONS = ("fp32", "bf16")


def build(config: Path, precision: str, state: dict | None) -> torch.nn.Module:
    cfg = build_config(str(config), ["MODEL.DEVICE", "cpu", "MODEL.MASK_FORMER.TEST.PRECISION", precision])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if state is not None:
        model.load_state_dict(state)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not args.config.is_file():
        parser.exit(2, f"error: config file {args.config} does not exist\n")
    if min(args.frames, args.repeats, args.height, args.width, args.threads) < 1:
        parser.exit(2, "error: --frames, --repeats, --height, --width and --threads must be >= 1\n")
    torch.set_num_threads(args.threads)

    fp32 = build(args.config, "fp32", None)
    models = {"fp32": fp32, "bf16": build(args.config, "bf16", fp32.state_dict())}
    generator = torch.Generator().manual_seed(0)
    frames = [
        torch.randint(0, 256, (3, args.height, args.width), generator=generator, dtype=torch.uint8).float()
        for _ in range(args.frames)
    ]
    video = [{"image": frames, "height": args.height, "width": args.width}]
    seconds: dict[str, list[float]] = {name: [] for name in PRECISIONS}
    with torch.no_grad():
        for model in models.values():
            model(video)  # warm-up
        for _ in range(args.repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(video)
                seconds[name].append((time.perf_counter() - start) / args.frames)

    print(
        f"\nmodel {args.config.name}, {args.frames} frames {args.height}x{args.width}, "
        f"{args.threads} threads, {args.repeats} alternating runs; {cpu_name()}; torch {torch.__version__}\n"
    )
    print("| precision | ms/frame (median) | runs (ms/frame) |")
    print("|---|---:|---|")
    for name in PRECISIONS:
        runs = ", ".join(f"{1000 * s:.0f}" for s in seconds[name])
        print(f"| {name} | {1000 * statistics.median(seconds[name]):.0f} | {runs} |")
    pairs = [a / b for a, b in zip(seconds["fp32"], seconds["bf16"], strict=True)]
    print(
        f"\nbf16 speed-up: {statistics.median(seconds['fp32']) / statistics.median(seconds['bf16']):.2f}x "
        f"(per pair: {', '.join(f'{p:.2f}x' for p in pairs)})"
    )


if __name__ == "__main__":
    main()
