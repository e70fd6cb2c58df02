#!/usr/bin/env python
"""Write the synthetic YouTube-VIS-format dataset (see :mod:`minvis.data.synthetic`).

Writes ``ROOT/<split>/JPEGImages/<video>/<frame>.jpg`` and ``ROOT/<split>.json`` per split;
the default ``--root`` is where ``minvis.data`` registers ``synthetic_ytvis_{train,val}``.
``--stress`` overrides ``--max-objects``; ``--video-out`` also writes one more video, for the demo.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from minvis.data.builtin import datasets_root
from minvis.data.synthetic import (
    STRESS_PRESETS,
    SyntheticSpec,
    render_video,
    stress_spec,
    video_rng,
    write_split,
    write_video_file,
)
from minvis.data.video_io import VIDEO_EXTENSIONS
from minvis.output_paths import OutputPathError, check_outputs


def parse_split(text: str) -> tuple[str, int]:
    """``name=count``, e.g. ``train=40``."""
    name, _, count = text.partition("=")
    if not name or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"expected NAME=COUNT with COUNT >= 1, got {text!r}")
    return name, int(count)


def argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, found before anything is written; or None."""
    for flag, value, least in [
        ("--num-frames", args.num_frames, 1),
        ("--height", args.height, 1),
        ("--width", args.width, 1),
        ("--max-objects", args.max_objects, 2),
        ("--video-frames", args.video_frames, 1),
    ]:
        if value < least:
            return f"{flag} must be >= {least}, got {value}"
    if not math.isfinite(args.fps) or args.fps <= 0:
        return f"--fps must be a positive number, got {args.fps}"
    video = args.video_out
    if video is None:
        return None
    if video.suffix.lower() not in VIDEO_EXTENSIONS:
        known = ", ".join(VIDEO_EXTENSIONS)
        return f"--video-out {video}: unknown video extension {video.suffix!r} (use one of {known})"
    if video.is_dir():
        return f"--video-out {video} is a folder"
    folder = next((p for p in video.parents if p.exists()), Path("."))
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        return f"--video-out {video}: {folder} is not a writable folder"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(datasets_root(), "synthetic_ytvis"))
    parser.add_argument(
        "--splits",
        type=parse_split,
        nargs="+",
        default=[("train", 40), ("val", 10)],
        help="splits to write, as NAME=NUM_VIDEOS",
    )
    parser.add_argument("--num-frames", type=int, default=12, help="frames per video")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--max-objects", type=int, default=4, help="objects per video, >= 2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rle", choices=["uncompressed", "compressed"], default="uncompressed")
    parser.add_argument(
        "--stress", choices=["none", *STRESS_PRESETS], default="none", help="tracking stress preset"
    )
    parser.add_argument("--video-out", type=Path, help="also write a video file (.mp4/.avi)")
    parser.add_argument("--video-frames", type=int, default=36, help="length of --video-out")
    parser.add_argument("--fps", type=float, default=6.0, help="frame rate of --video-out")
    parser.add_argument("--overwrite", action="store_true", help="replace existing splits and --video-out")
    args = parser.parse_args(argv)
    problem = argument_problem(args)
    if problem:
        parser.error(problem)
    spec = stress_spec(
        args.stress, SyntheticSpec(args.num_frames, args.height, args.width, args.max_objects, args.rle)
    )

    outputs = [args.root / f"{name}.json" for name, _ in args.splits]
    outputs += [args.root / name for name, _ in args.splits]
    outputs += [args.video_out] if args.video_out else []
    try:
        check_outputs(outputs, [], overwrite=args.overwrite)
    except OutputPathError as e:
        parser.error(str(e))
    start = time.perf_counter()
    for name, num_videos in args.splits:
        shutil.rmtree(args.root / name, ignore_errors=True)
        json_path = write_split(args.root, name, num_videos, spec, args.seed)
        print(f"{name}: {num_videos} videos -> {json_path}")
    if args.video_out:
        video_spec = replace(spec, num_frames=args.video_frames)
        video = render_video(video_rng(args.seed, "video_out", 0), video_spec)
        args.video_out.parent.mkdir(parents=True, exist_ok=True)
        write_video_file(args.video_out, video.frames, args.fps)
        print(f"video: {args.video_frames} frames -> {args.video_out}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
