#!/usr/bin/env python
"""MinVIS demo: track and segment the instances of a video, frame by frame.

    python demo/demo.py --config-file CONFIG --input VIDEO_OR_FOLDER_OR_GLOB --output DIR \\
        [--confidence-threshold 0.5] [--save-frames] [--max-frames N] [--amp] [--overwrite] \\
        [--opts KEY VALUE ...]

Writes to DIR: ``annotated.mp4`` (each track in a stable colour with its id, class and
running score), ``results.json`` (one entry per track in the YouTube-VIS submission
format, video_id 1) and, with ``--save-frames``, ``frames/NNNNN.jpg``. The input is
streamed: memory does not grow with the video. Errors exit with status 2.
"""

import argparse
import itertools
import shutil
import sys
import time
from pathlib import Path

import cv2
import torch
from tqdm import tqdm

from minvis.config import build_config
from minvis.data.video_io import VideoWriter, open_frame_source
from minvis.evaluation.track_spool import TrackSpool
from minvis.modeling import CheckpointLoadError, VideoInputError
from minvis.predictor import VideoPredictor
from minvis.visualization import draw_instances
from minvis.ytvis_format import SubmissionWriter

VIDEO_NAME = "annotated.mp4"
RESULTS_NAME = "results.json"
FRAMES_NAME = "frames"
DEFAULT_FPS = 10.0  # for frame folders, which carry no frame rate


class DemoError(Exception):
    """A problem the user can fix; reported without a traceback."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MinVIS video instance segmentation demo")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to the config file")
    parser.add_argument(
        "--input",
        required=True,
        help="a video file (.mp4 .avi .mov .mkv), a folder of frames or a glob pattern",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the outputs")
    parser.add_argument(
        "--confidence-threshold", type=float, default=0.5, help="minimum running score of a shown track"
    )
    parser.add_argument(
        "--save-frames", action="store_true", help="also write every annotated frame as a jpg"
    )
    parser.add_argument("--max-frames", type=int, help="process only the first N frames")
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the outputs of a previous run in DIR"
    )
    parser.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs"
    )
    args = parser.parse_args(argv)
    if args.max_frames is not None and args.max_frames < 1:
        parser.error("--max-frames must be >= 1")
    return args


def prepare_output(folder: Path, overwrite: bool) -> None:
    """Create ``folder``; refuse to touch a previous run's outputs unless ``overwrite``."""
    previous = [
        folder / name for name in (VIDEO_NAME, RESULTS_NAME, FRAMES_NAME) if (folder / name).exists()
    ]
    if previous and not overwrite:
        raise DemoError(
            f"{folder} already holds outputs of a previous run ({', '.join(p.name for p in previous)}); "
            "pass --overwrite to replace them or choose another --output folder"
        )
    for path in previous:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def load_config(args: argparse.Namespace):
    try:
        cfg = build_config(args.config_file, args.opts)
    except (AssertionError, KeyError, ValueError) as error:  # how yacs reports bad files and keys
        raise DemoError(f"config {args.config_file} (with --opts {args.opts}): {error}") from error
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise DemoError(
            f"{args.config_file} asks for MODEL.DEVICE {cfg.MODEL.DEVICE} but CUDA is not available here; "
            "add --opts MODEL.DEVICE cpu"
        )
    return cfg


def run(args: argparse.Namespace) -> None:
    cfg = load_config(args)
    source = open_frame_source(args.input)
    predictor = VideoPredictor.from_config(cfg, score_threshold=args.confidence_threshold, amp=args.amp)
    output = Path(args.output)
    prepare_output(output, args.overwrite)
    class_names = predictor.class_names
    info = source.info
    total = min(filter(None, (info.num_frames, args.max_frames)), default=None)
    if args.save_frames:
        (output / FRAMES_NAME).mkdir()

    start = time.perf_counter()
    # The predictor pulls frame t from one copy of the stream, the drawing loop reads it
    # from the other: tee buffers a single frame.
    shown, fed = itertools.tee(itertools.islice(source, args.max_frames))
    with (
        VideoWriter(output / VIDEO_NAME, info.fps or DEFAULT_FPS, (info.height, info.width)) as video,
        TrackSpool() as spool,
        tqdm(total=total, unit="frame", desc="MinVIS") as progress,
    ):
        for frame, instances in zip(shown, predictor(fed)):
            spool.add(instances)
            annotated = draw_instances(frame, instances, class_names)
            video.write(annotated)
            if args.save_frames:
                path = output / FRAMES_NAME / f"{instances.frame_index:05d}.jpg"
                cv2.imwrite(str(path), annotated[:, :, ::-1])
            progress.update()
        seconds = time.perf_counter() - start
        with SubmissionWriter(output / RESULTS_NAME) as results:
            results.write(spool.entries(video_id=1, category_ids=predictor.category_ids))
    print(
        f"{spool.num_frames} frames in {seconds:.1f} s ({spool.num_frames / seconds:.2f} frames/s), "
        f"{spool.num_tracks} tracks -> {output / VIDEO_NAME}, {output / RESULTS_NAME}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (DemoError, OSError, CheckpointLoadError, VideoInputError) as error:
        # OSError covers VideoReadError, VideoWriteError and a missing MODEL.WEIGHTS file.
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
