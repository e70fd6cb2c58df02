#!/usr/bin/env python
"""Split a YouTube-VIS/OVIS train annotation file by video into local train/val files.

Written to ``$DETECTRON2_DATASETS/{ytvis_2019,ytvis_2021,ovis}/splits``, ``train.json`` and
``val.json`` are registered as ``{ytvis_2019,ytvis_2021,ovis}_local{train,val}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from minvis.data.split import SPLIT_FILES, split_videos
from minvis.output_paths import OutputPathError, StagedOutputs, check_outputs
from minvis.ytvis_format import YTVISFormatError, parse_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="YouTube-VIS-format train annotations")
    parser.add_argument("--out-dir", type=Path, required=True, help="where train.json and val.json go")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of videos for val, (0, 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace existing split files")
    args = parser.parse_args(argv)
    if not 0 < args.val_fraction < 1:
        parser.error(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    outputs = [args.out_dir / name for name in SPLIT_FILES.values()]
    try:
        check_outputs(outputs, [args.json], overwrite=args.overwrite)
    except OutputPathError as e:
        parser.error(str(e))

    try:
        data = parse_json(args.json.read_text(encoding="utf-8"), args.json)
    except (OSError, UnicodeDecodeError) as e:
        parser.error(f"cannot read {args.json}: {e}")
    except YTVISFormatError as e:
        parser.error(str(e))
    try:
        train, val = split_videos(data, args.val_fraction, args.seed)
    except ValueError as e:
        parser.error(f"{args.json}: {e}")

    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(f"cannot create the folder {args.out_dir}: {e.strerror}")
    try:  # both files or neither
        with StagedOutputs(outputs) as staged:
            for subset, path in zip((train, val), outputs, strict=True):
                staged.path(path).write_text(json.dumps(subset), encoding="utf-8")
    except OSError as e:
        parser.error(str(e))
    for subset, path in zip((train, val), outputs, strict=True):
        print(f"{path}: {len(subset['videos'])} videos, {len(subset['annotations'])} annotations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
