#!/usr/bin/env python
"""The embedded default: train, evaluate and demo MinVIS end to end on a CPU in minutes.

1. Writes a synthetic YouTube-VIS-format dataset (train + held-out val videos) and a
   synthetic video file.
2. Trains the tiny config (configs/tiny/minvis_tiny_synthetic.yaml) on the train videos.
3. Evaluates it on the held-out videos: AP with the YouTube-VIS metric, and a
   server-format results.zip.
4. Runs demo/demo.py on the synthetic video file and writes the annotated video.

Everything goes to a new folder ``output/default_run/<timestamp>``.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "tiny" / "minvis_tiny_synthetic.yaml"


def run(step: str, command: list[str], env: dict[str, str]) -> None:
    print(f"\n=== {step}\n$ {' '.join(command)}", flush=True)
    start = time.time()
    result = subprocess.run(command, cwd=REPO, env=env)
    if result.returncode != 0:
        sys.exit(f"run_default: step '{step}' failed with exit code {result.returncode}")
    print(f"=== {step}: done in {time.time() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / "output" / "default_run")
    parser.add_argument("--iters", type=int, default=600, help="training iterations")
    parser.add_argument("--train-videos", type=int, default=64)
    parser.add_argument("--val-videos", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for training and evaluation: fixed (with the seed and "
        "torch's deterministic algorithms) so that every run gives the same AP; the AP "
        "depends on it. One thread: the same AP whatever the core count, and many times "
        "faster than more on a CPU shared with other jobs",
    )
    args = parser.parse_args()

    run_dir = args.output / time.strftime("%Y%m%d-%H%M%S")
    datasets = run_dir / "datasets"
    demo_video = run_dir / "synthetic_demo.mp4"
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets)}
    python = sys.executable
    started = time.time()

    run(
        "write the synthetic dataset and demo video",
        [
            python, "tools/data/make_synthetic_ytvis.py", "--root", str(datasets / "synthetic_ytvis"),
            "--splits", f"train={args.train_videos}", f"val={args.val_videos}",
            "--seed", str(args.seed), "--video-out", str(demo_video), "--video-frames", "60",
        ],
        env,
    )
    train_dir = run_dir / "train"
    run(
        "train the tiny model, then evaluate it on the held-out videos",
        [
            python, "train_net.py", "--config-file", str(CONFIG),
            "OUTPUT_DIR", str(train_dir), "SEED", str(args.seed),
            "NUM_THREADS", str(args.threads), "DETERMINISTIC", "True",
            "SOLVER.MAX_ITER", str(args.iters), "SOLVER.STEPS", f"({int(args.iters * 0.8)},)",
        ],
        env,
    )
    demo_dir = run_dir / "demo"
    run(
        "run the demo on the synthetic video file",
        [
            python, "demo/demo.py", "--config-file", str(CONFIG), "--input", str(demo_video),
            "--output", str(demo_dir), "--opts", "MODEL.WEIGHTS", str(train_dir / "model_final.pth"),
        ],
        env,
    )

    metrics = json.loads((train_dir / "inference" / "metrics.json").read_text())
    print(f"\nDone in {time.time() - started:.0f} s.")
    print(
        f"AP on {args.val_videos} held-out synthetic videos: {100 * metrics['AP']:.1f} "
        f"(AP50 {100 * metrics['AP50']:.1f}, AP75 {100 * metrics['AP75']:.1f})"
    )
    print(f"model:            {train_dir / 'model_final.pth'}")
    print(f"submission:       {train_dir / 'inference' / 'results.zip'}")
    print(f"annotated video:  {demo_dir}")


if __name__ == "__main__":
    main()
