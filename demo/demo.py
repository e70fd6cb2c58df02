#!/usr/bin/env python
"""MinVIS demo: track and segment the instances of a video, frame by frame.

Writes to DIR: ``annotated.mp4`` (each track in a stable colour with its id, class and score),
``results.json`` (one entry per track in the submission format, video_id 1) and, with
``--save-frames``, ``frames/NNNNN.jpg``. Errors exit with status 2.

``--mode stream`` (default): each frame's tracks with running scores, in one pass with flat
memory. ``--mode video``: the paper's top-k instances of the whole video with video-level class
and score (also in ``results.json``), in two passes: pass 1 runs the model and keeps the mask
logits (``T * Q * h * w`` floats, in a temporary file unless ``SPILL_MASKS_TO_DISK False``),
pass 2 decodes the input again and draws.

Outputs follow :mod:`minvis.output_paths`: DIR is held by one run at a time, and the outputs
replace the previous ones together, only once the video is read back whole and all are on disk.
"""

import argparse
import errno
import itertools
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from detectron2.config import CfgNode
from tqdm import tqdm

from minvis.config import build_config
from minvis.data.video_io import ImageSequenceSource, VideoFileSource, VideoWriter, open_frame_source
from minvis.evaluation.track_spool import TrackSpool
from minvis.modeling import CheckpointLoadError, VideoInputError
from minvis.output_paths import (
    OutputPathError,
    StagedOutputs,
    check_outputs,
    interrupt_on_sigterm,
    lock_output_dir,
)
from minvis.predictor import VideoPredictor
from minvis.tracking import FrameInstances
from minvis.visualization import draw_instances, shown_instances
from minvis.ytvis_format import SubmissionWriter

VIDEO_NAME = "annotated.mp4"
RESULTS_NAME = "results.json"
FRAMES_NAME = "frames"
DEFAULT_FPS = 10.0  # for frame folders, which carry no frame rate
FrameSource = VideoFileSource | ImageSequenceSource


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
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="minimum score of a shown instance (stream: running score; video: video-level score)",
    )
    parser.add_argument(
        "--save-frames", action="store_true", help="also write every annotated frame as a jpg"
    )
    parser.add_argument(
        "--mode",
        choices=("stream", "video"),
        default="stream",
        help="stream: per-frame tracks with running scores, one pass; video: the paper's top-k "
        "instances of the whole video with video-level scores, two passes",
    )
    parser.add_argument("--max-frames", type=int, help="process only the first N frames")
    parser.add_argument(
        "--frame-stride", type=int, default=1, metavar="N", help="use every N-th frame (long videos)"
    )
    parser.add_argument(
        "--amp", action="store_true", help="float16 on CUDA (TEST.AMP.ENABLED, read by the precision setting)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files at the output names in DIR (never the input)",
    )
    parser.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs"
    )
    args = parser.parse_args(argv)
    if args.max_frames is not None and args.max_frames < 1:
        parser.error("--max-frames must be >= 1")
    if args.frame_stride < 1:
        parser.error("--frame-stride must be >= 1")
    return args


def check_output(folder: Path, inputs: list[str], overwrite: bool) -> list[Path]:
    """The existing files at the output names in ``folder`` (replaced once the run has
    succeeded), by the rule of :mod:`minvis.output_paths`."""
    outputs = [folder / name for name in (VIDEO_NAME, RESULTS_NAME, FRAMES_NAME)]
    return check_outputs(outputs, inputs, overwrite=overwrite)


def warn_about_setup(cfg, amp: bool) -> None:
    """Runtime warnings for runs that work but are probably not what the user meant."""
    if not cfg.MODEL.WEIGHTS:
        warnings.warn(
            "MODEL.WEIGHTS is empty: the model has random weights and its output means nothing; "
            "pass --opts MODEL.WEIGHTS /path/to/model.pth",
            RuntimeWarning,
            stacklevel=2,
        )
    if amp and not cfg.MODEL.DEVICE.startswith("cuda"):
        warnings.warn(
            f"--amp has no effect on {cfg.MODEL.DEVICE}: running in float32", RuntimeWarning, stacklevel=2
        )


def load_config(args: argparse.Namespace) -> CfgNode:
    try:
        # --amp is the official key TEST.AMP.ENABLED (off by default in the demo); --opts win.
        cfg = build_config(args.config_file, ["TEST.AMP.ENABLED", str(args.amp), *args.opts])
    except (AssertionError, KeyError, ValueError) as error:  # how yacs reports bad files and keys
        raise DemoError(f"config {args.config_file} (with --opts {args.opts}): {error}") from error
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise DemoError(
            f"{args.config_file} asks for MODEL.DEVICE {cfg.MODEL.DEVICE} but CUDA is not available here; "
            "add --opts MODEL.DEVICE cpu"
        )
    return cfg


def frame_pairs(
    args: argparse.Namespace, source: Iterable[np.ndarray], predictor: VideoPredictor
) -> Iterator[tuple[np.ndarray, FrameInstances]]:
    """``(frame, instances)`` for every ``--frame-stride``-th of the first ``--max-frames``
    frames, in ``--mode`` (see the module docstring)."""

    def used(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        return itertools.islice(frames, 0, args.max_frames, args.frame_stride)

    if args.mode == "stream":
        # The predictor pulls frame t from one copy of the stream, the drawing loop reads it
        # from the other: tee buffers a single frame.
        shown, fed = itertools.tee(used(source))
        return zip(shown, predictor(fed))
    result = predictor.track_video(tqdm(used(source), unit="frame", desc="MinVIS pass 1/2"))
    return zip(used(open_frame_source(args.input)), result.frame_instances(), strict=True)


def run(args: argparse.Namespace) -> None:
    cfg = load_config(args)
    warn_about_setup(cfg, args.amp)
    source = open_frame_source(args.input)
    output = Path(args.output)
    inputs = getattr(source, "files", [args.input])
    check_output(output, inputs, args.overwrite)  # before the folder is created or locked
    # SIGTERM, like Ctrl-C, unwinds the with blocks: the lock is released, partial outputs
    # (and the track spool's temporary folder) removed.
    with interrupt_on_sigterm(), lock_output_dir(output):
        existing = check_output(output, inputs, args.overwrite)  # again: no other run writes here now
        write_outputs(args, cfg, source, output, existing)


def write_outputs(
    args: argparse.Namespace, cfg: CfgNode, source: FrameSource, output: Path, existing: list[Path]
) -> None:
    """Run the model and write the outputs into ``output`` (held by this run)."""
    predictor = VideoPredictor.from_config(cfg, score_threshold=args.confidence_threshold)
    class_names = predictor.class_names
    info = source.info
    total = min(filter(None, (info.num_frames, args.max_frames)), default=None)
    total = None if total is None else -(-total // args.frame_stride)
    video_path, results_path, frames_path = output / VIDEO_NAME, output / RESULTS_NAME, output / FRAMES_NAME
    finals = [video_path, results_path] + ([frames_path] if args.save_frames else [])

    start = time.perf_counter()
    pairs = frame_pairs(args, source, predictor)  # video mode: runs pass 1 here
    with StagedOutputs(finals, replaces=existing) as staged:
        frames_dir = staged.path(frames_path)
        if args.save_frames:
            frames_dir.mkdir()
        fps = (info.fps or DEFAULT_FPS) / args.frame_stride
        with (
            VideoWriter(staged.path(video_path), fps, (info.height, info.width)) as video,
            TrackSpool() as spool,
            tqdm(total=total, unit="frame", desc="MinVIS") as progress,
        ):
            staged.checks[video_path] = video.check
            for frame, instances in pairs:
                spool.add(instances)
                shown = shown_instances(instances, args.confidence_threshold)
                annotated = draw_instances(frame, shown, class_names)
                video.write(annotated)
                if args.save_frames:
                    frame_file = frames_dir / f"{instances.frame_index:05d}.jpg"
                    if not cv2.imwrite(str(frame_file), annotated[:, :, ::-1]):
                        raise OSError(errno.EIO, "OpenCV cannot write a frame", str(frame_file))
                progress.update()
            seconds = time.perf_counter() - start
            with SubmissionWriter(staged.path(results_path)) as results:
                results.write(spool.entries(video_id=1, category_ids=predictor.category_ids))
    print(
        f"{spool.num_frames} frames in {seconds:.1f} s ({spool.num_frames / seconds:.2f} frames/s), "
        f"{spool.num_tracks} tracks -> {video_path}, {results_path}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (DemoError, OSError, CheckpointLoadError, VideoInputError, OutputPathError) as error:
        # OSError covers VideoReadError, VideoWriteError and a missing MODEL.WEIGHTS file.
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no output written (partial outputs removed)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
