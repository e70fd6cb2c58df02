#!/usr/bin/env python
"""Write the annotations that training with ``INPUT.SAMPLING_FRAME_RATIO`` actually uses.

Other frames' segmentations, boxes and areas become null; tracks left without a segmentation
are dropped. For inspection: training with the ratio set reads the full file, same frames.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from minvis.data.sampling import subsampled_frame_indices
from minvis.output_paths import OutputPathError, atomic_output, check_outputs
from minvis.ytvis_format import YTVISFormatError, read_json

PER_FRAME_KEYS = ("segmentations", "bboxes", "areas")


def subsample(data: dict[str, Any], ratio: float) -> tuple[dict[str, Any], dict[int, list[int]]]:
    """The sub-sampled annotation file and, per video id, the frames it keeps."""
    kept = {v["id"]: subsampled_frame_indices(v["length"], ratio) for v in data["videos"]}
    annotations = []
    for anno in data.get("annotations") or []:
        if anno["video_id"] not in kept:
            raise ValueError(f"annotation {anno.get('id')} refers to unknown video {anno['video_id']}")
        frames = set(kept[anno["video_id"]])
        anno = dict(anno)
        for key in PER_FRAME_KEYS:
            if anno.get(key) is not None:
                anno[key] = [x if t in frames else None for t, x in enumerate(anno[key])]
        if any(anno.get("segmentations") or []):
            annotations.append(anno)
    return {**data, "annotations": annotations}, kept


def report(data: dict[str, Any], kept: dict[int, list[int]]) -> str:
    """How many frames keep annotations: total, per video, and those with an object."""
    with_objects: dict[int, set[int]] = defaultdict(set)
    for anno in data["annotations"]:
        with_objects[anno["video_id"]].update(t for t, s in enumerate(anno["segmentations"]) if s)
    per_video = [len(frames) for frames in kept.values()]
    total_frames = sum(v["length"] for v in data["videos"])
    return "\n".join(
        [
            f"videos: {len(per_video)}, frames: {total_frames}",
            f"annotated frames kept: {sum(per_video)} "
            f"(per video min {min(per_video)}, mean {statistics.fmean(per_video):.2f}, "
            f"max {max(per_video)})",
            f"kept frames showing at least one object: {sum(len(f) for f in with_objects.values())}",
            f"tracks kept: {len(data['annotations'])}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="YouTube-VIS annotation file")
    parser.add_argument("--ratio", type=float, required=True, help="SAMPLING_FRAME_RATIO, (0, 1]")
    parser.add_argument("--out", type=Path, required=True, help="where to write the result")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    if not 0 < args.ratio <= 1:
        parser.error(f"--ratio must be in (0, 1], got {args.ratio}")
    try:
        check_outputs([args.out], [args.json], overwrite=args.overwrite)
        data = read_json(args.json)
    except (OutputPathError, OSError, YTVISFormatError) as e:
        parser.error(str(e))
    if not isinstance(data, dict) or not data.get("videos"):
        parser.error(f"{args.json} lists no videos")
    try:
        result, kept = subsample(data, args.ratio)
    except ValueError as e:
        parser.error(f"{args.json}: {e}")
    try:
        with atomic_output(args.out) as temporary:
            temporary.write_text(json.dumps(result), encoding="utf-8")
    except OSError as e:
        parser.error(str(e))
    print(report(result, kept))
    return 0


if __name__ == "__main__":
    sys.exit(main())
