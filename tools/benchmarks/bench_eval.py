#!/usr/bin/env python
"""Time the YouTube-VIS metric and the RLE encoder on a YouTube-VIS-sized synthetic case.

    python tools/benchmarks/benchmark_eval.py [--videos 300] [--classes 40] [--frames 36]
        [--predictions 1000 3000] [--seed 0]

The case is deterministic: 300 videos (three in four 720x1280, the rest 360x640) of 36
frames, about two ground-truth instances per video (elliptic blobs moving and growing
over a span of frames, null outside it, areas across the small/medium/large buckets,
uncompressed RLE as in the official annotation files) and predictions in server format
(compressed RLE or null): a noisy copy of each ground-truth track (class wrong one time
in five) plus random false positives, up to the requested total. Prints a markdown
table with the machine it ran on.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from machine_info import cpu_name
from pycocotools import mask as mask_utils

from minvis.evaluation.ytvis_metric import evaluate_ytvis
from minvis.ytvis_format import SubmissionWriter, encode_masks, load_results, zip_results

SIZES = ((720, 1280), (720, 1280), (720, 1280), (360, 640))
Blob = np.ndarray  # [centre y, centre x, radius y, radius x]


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
    starts = starts[np.concatenate([[True], ~joined])]
    ends = ends[np.concatenate([~joined, [True]])]
    bounds = np.concatenate([[0], np.stack([starts, ends], axis=1).ravel(), [height * width]])
    return {"size": [height, width], "counts": np.diff(bounds).tolist()}


def compress(rle: dict[str, Any] | None) -> dict[str, Any] | None:
    if rle is None:
        return None
    compressed = mask_utils.frPyObjects(rle, *rle["size"])
    return {"size": rle["size"], "counts": compressed["counts"].decode("ascii")}


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
    return [
        None if blob is None or rng.random() < 0.05 else (blob + shift * blob[[2, 3, 2, 3]]) * scale
        for blob in track
    ]


def synthetic_case(
    num_videos: int,
    num_classes: int,
    frames: int,
    num_predictions: int,
    seed: int,
    sizes: tuple[tuple[int, int], ...] = SIZES,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    videos, annotations, results = [], [], []
    per_video = np.full(num_videos, num_predictions // num_videos)
    per_video[: num_predictions % num_videos] += 1
    for vid in range(1, num_videos + 1):
        height, width = sizes[vid % len(sizes)]
        videos.append({"id": vid, "height": height, "width": width, "length": frames})
        gt_tracks = [random_track(rng, height, width, frames) for _ in range(rng.integers(1, 4))]
        gt_classes = rng.integers(1, num_classes + 1, len(gt_tracks))
        for track, category in zip(gt_tracks, gt_classes, strict=True):
            rles = [None if b is None else ellipse_rle(height, width, b) for b in track]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": vid,
                    "category_id": int(category),
                    "iscrowd": 0,
                    "segmentations": rles,
                    "areas": [None if r is None else float(sum(r["counts"][1::2])) for r in rles],
                }
            )
        for k in range(per_video[vid - 1]):
            matched = k < len(gt_tracks)
            track = noisy_copy(rng, gt_tracks[k]) if matched else random_track(rng, height, width, frames)
            category = gt_classes[k] if matched and rng.random() < 0.8 else rng.integers(1, num_classes + 1)
            results.append(
                {
                    "video_id": vid,
                    "category_id": int(category),
                    "score": float(rng.uniform(0.3, 1.0) if matched else rng.uniform(0.0, 0.7)),
                    "segmentations": [
                        None if b is None else compress(ellipse_rle(height, width, b)) for b in track
                    ],
                }
            )
    gt = {
        "videos": videos,
        "categories": [{"id": c, "name": f"class{c}"} for c in range(1, num_classes + 1)],
        "annotations": annotations,
    }
    return gt, results


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def encode_time_per_frame(gt: dict[str, Any], height: int, instances: int = 10) -> float:
    """Seconds to encode one frame of ``instances`` dense boolean masks (model output)."""
    rles = [
        mask_utils.frPyObjects(s, *s["size"])
        for a in gt["annotations"]
        for s in a["segmentations"]
        if s is not None and s["size"][0] == height
    ][:instances]
    masks = np.ascontiguousarray(mask_utils.decode(rles).transpose(2, 0, 1)).astype(bool)
    repeats = 20
    seconds, _ = timed(lambda: [encode_masks(masks) for _ in range(repeats)])
    return seconds / repeats




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--predictions", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"pycocotools {importlib.metadata.version('pycocotools')}\n"
    )
    print("| case | GT instances | predictions | build case (s) | metric (s) | write zip + load (s) | AP |")
    print("|---|---|---|---|---|---|---|")
    for num_predictions in args.predictions:
        build, (gt, results) = timed(
            lambda n=num_predictions: synthetic_case(args.videos, args.classes, args.frames, n, args.seed)
        )
        metric, metrics = timed(lambda gt=gt, results=results: evaluate_ytvis(gt, results))
        with tempfile.TemporaryDirectory() as tmp:
            with SubmissionWriter(Path(tmp) / "results.json") as writer:
                writer.write(results)
            load, _ = timed(lambda tmp=tmp: load_results(zip_results(Path(tmp) / "results.json")))
        print(
            f"| {args.videos} videos x {args.frames} frames, {args.classes} classes "
            f"| {len(gt['annotations'])} | {len(results)} | {build:.1f} | {metric:.2f} "
            f"| {load:.2f} | {metrics.stats['AP']:.3f} |"
        )
    print("\n| RLE encoding (encode_masks, 10 instances per frame) | ms per frame |")
    print("|---|---|")
    for height, width in sorted(set(SIZES)):
        per_frame = encode_time_per_frame(gt, height)
        print(f"| {height}x{width} | {per_frame * 1e3:.1f} |")


if __name__ == "__main__":
    main()
