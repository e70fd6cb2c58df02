#!/usr/bin/env python
"""MinVIS demo: track and segment the instances of a video, frame by frame.

Writes to DIR: ``annotated.mp4`` (each track in a stable colour with its id, class and score),
``results.json`` (one entry per track in the submission format, video_id 1), with
``--save-frames`` ``frames/NNNNN.jpg``, and for a live input or with ``--track-log``
``tracks.jsonl`` (:mod:`minvis.track_log`; during the run it grows by one line per frame as
``tracks.partial.jsonl``, which ``tail -f`` can follow through the final rename). Errors exit
with status 2.

Live inputs (a camera index, a stream URL, ``-`` for raw frames on stdin;
:mod:`minvis.data.live_source`) run in stream mode until the stream ends, the connection is
lost, no frame comes for ``--read-timeout`` seconds, or Ctrl-C/SIGTERM; each of these writes
the outputs and prints one line saying why the run stopped (a second Ctrl-C aborts, writing
nothing). ``--max-latency`` drops the frames that waited longer than that for the model.

``--mode stream`` (default): each frame's tracks with running scores, in one pass with flat
memory. ``--mode video``: the paper's top-k instances of the whole video with video-level class
and score (also in ``results.json``), in two passes: pass 1 runs the model and keeps the mask
logits (``T * Q * h * w`` floats, in a temporary file unless ``SPILL_MASKS_TO_DISK False``),
pass 2 decodes the input again and draws.

Outputs follow :mod:`minvis.output_paths`: DIR is held by one run at a time, and the outputs
replace the previous ones together, only once the video is read back whole and all are on disk.
"""

import argparse
import contextlib
import errno
import itertools
import os
import re
import signal
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType

import cv2
import numpy as np
import torch
from detectron2.config import CfgNode
from tqdm import tqdm

from minvis.config import build_config
from minvis.data.live_source import (
    DEFAULT_READ_TIMEOUT,
    RAW_PIXEL_FORMATS,
    STDIN_INPUT,
    LiveSource,
    is_live_input,
)
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
from minvis.track_log import TrackLog
from minvis.tracking import FrameInstances
from minvis.visualization import draw_instances, shown_instances
from minvis.ytvis_format import SubmissionWriter

VIDEO_NAME = "annotated.mp4"
RESULTS_NAME = "results.json"
FRAMES_NAME = "frames"
TRACKS_NAME = "tracks.jsonl"
DEFAULT_FPS = 10.0  # for frame folders and stdin, which carry no frame rate
WINDOW_NAME = "MinVIS"
WINDOW_WAIT_MS = 1  # --show: how long each frame waits for the window's events
FrameSource = VideoFileSource | ImageSequenceSource | LiveSource


class DemoError(Exception):
    """A problem the user can fix; reported without a traceback."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MinVIS video instance segmentation demo")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to the config file")
    parser.add_argument(
        "--input",
        required=True,
        help="a video file (.mp4 .avi .mov .mkv), a folder of frames, a glob pattern, or a live input: "
        "a camera index (0), a stream URL (rtsp://, http://, ...) or - (raw frames on stdin)",
    )
    parser.add_argument(
        "--input-size", type=frame_size, metavar="WxH", help="the size of the raw frames of --input -"
    )
    parser.add_argument(
        "--pixel-format",
        choices=RAW_PIXEL_FORMATS,
        default="rgb24",
        help="the layout of the raw frames of --input -",
    )
    parser.add_argument(
        "--max-latency",
        type=float,
        metavar="SECONDS",
        help="live inputs: drop the frames that waited longer than this for the model (default: drop none)",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=DEFAULT_READ_TIMEOUT,
        metavar="SECONDS",
        help="live inputs: stop when no frame comes for this long",
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
        "--track-log", action="store_true", help=f"also write {TRACKS_NAME} (always written for a live input)"
    )
    parser.add_argument("--show", action="store_true", help="also show the annotated frames in a window")
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
    if (args.max_latency is not None and args.max_latency <= 0) or args.read_timeout <= 0:
        parser.error("--max-latency and --read-timeout must be > 0")
    if (args.input == STDIN_INPUT) != (args.input_size is not None):
        parser.error("--input - (raw frames on stdin) and --input-size WxH go together")
    live = is_live_input(args.input)
    if not live and args.max_latency is not None:
        parser.error("--max-latency applies to live inputs (a camera, a stream URL, -); a file is read whole")
    if live and args.mode == "video":
        parser.error("--mode video reads the input twice; a live input can be read once: use --mode stream")
    return args


def frame_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. ``640x480``) as ``(width, height)``."""
    match = re.fullmatch(r"([1-9]\d*)x([1-9]\d*)", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    return int(match[1]), int(match[2])


def check_output(folder: Path, inputs: list[str], overwrite: bool) -> list[Path]:
    """The existing files at the output names in ``folder`` (replaced once the run has
    succeeded), by the rule of :mod:`minvis.output_paths`."""
    outputs = [folder / name for name in (VIDEO_NAME, RESULTS_NAME, FRAMES_NAME, TRACKS_NAME)]
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


def timed_frames(source: FrameSource) -> Iterator[tuple[np.ndarray, float]]:
    """``(frame, time)``: a live frame with the time it was read (seconds since the epoch), a
    file's frame with its position in the video (seconds)."""
    if isinstance(source, LiveSource):
        return ((timed.frame, timed.time) for timed in source.timed_frames())
    fps = source.info.fps or DEFAULT_FPS
    return ((frame, index / fps) for index, frame in enumerate(source))


def frame_pairs(
    args: argparse.Namespace, source: FrameSource, predictor: VideoPredictor
) -> Iterator[tuple[tuple[np.ndarray, float], FrameInstances]]:
    """``((frame, time), instances)`` for every ``--frame-stride``-th of the first
    ``--max-frames`` frames, in ``--mode`` (see the module docstring)."""

    def used(frames: Iterable[tuple[np.ndarray, float]]) -> Iterator[tuple[np.ndarray, float]]:
        return itertools.islice(frames, 0, args.max_frames, args.frame_stride)

    if args.mode == "stream":
        # The predictor pulls frame t from one copy of the stream, the drawing loop reads it
        # from the other: tee buffers a single frame.
        shown, fed = itertools.tee(used(timed_frames(source)))
        return zip(shown, predictor(frame for frame, _ in fed))
    pass_1 = (frame for frame, _ in used(timed_frames(source)))
    result = predictor.track_video(tqdm(pass_1, unit="frame", desc="MinVIS pass 1/2"))
    return zip(used(timed_frames(open_frame_source(args.input))), result.frame_instances(), strict=True)


@contextlib.contextmanager
def stop_on_signals(source: FrameSource) -> Iterator[None]:
    """For a live source: the first SIGINT or SIGTERM ends the stream after the frame in hand
    (the outputs are written); the handlers in place before take the next one."""
    if not isinstance(source, LiveSource):
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        source.stop(f"interrupted by {signal.Signals(signum).name}")
        for number, handler in previous.items():
            signal.signal(number, handler)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def display_window(wanted: bool) -> Iterator[bool]:
    """``--show``: whether a window shows the frames; without a display, a warning and False."""
    if not wanted:
        yield False
        return
    problem = None
    if sys.platform.startswith("linux") and not any(map(os.environ.get, ("DISPLAY", "WAYLAND_DISPLAY"))):
        problem = "no display ($DISPLAY and $WAYLAND_DISPLAY are not set)"
    else:
        try:
            cv2.namedWindow(WINDOW_NAME)
        except cv2.error:
            problem = "OpenCV cannot open a window here (a headless build?)"
    if problem is not None:
        warnings.warn(f"--show: {problem}; the outputs are written as usual", RuntimeWarning, stacklevel=3)
        yield False
        return
    try:
        yield True
    finally:
        cv2.destroyWindow(WINDOW_NAME)


def run(args: argparse.Namespace) -> None:
    cfg = load_config(args)
    warn_about_setup(cfg, args.amp)
    source = open_frame_source(
        args.input,
        max_latency=args.max_latency,
        read_timeout=args.read_timeout,
        raw_size=args.input_size,
        raw_format=args.pixel_format,
    )
    output = Path(args.output)
    inputs = getattr(source, "files", [args.input])
    check_output(output, inputs, args.overwrite)  # before the folder is created or locked
    # SIGTERM, like Ctrl-C, unwinds the with blocks: the lock is released, partial outputs
    # (and the track spool's temporary folder) removed; a live source stops first instead.
    with interrupt_on_sigterm(), lock_output_dir(output), stop_on_signals(source):
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
    live = isinstance(source, LiveSource)
    tracks_path = output / TRACKS_NAME if args.track_log or live else None
    finals = [video_path, results_path] + ([frames_path] if args.save_frames else [])
    finals += [tracks_path] if tracks_path else []

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
            TrackLog(staged.path(tracks_path), class_names, predictor.category_ids)
            if tracks_path
            else contextlib.nullcontext() as track_log,
            display_window(args.show) as showing,
            tqdm(total=total, unit="frame", desc="MinVIS") as progress,
        ):
            staged.checks[video_path] = video.check
            for (frame, frame_time), instances in pairs:
                spool.add(instances)
                shown = shown_instances(instances, args.confidence_threshold)
                annotated = draw_instances(frame, shown, class_names)
                video.write(annotated)
                if track_log:
                    track_log.write(frame_time, shown)
                if showing:
                    cv2.imshow(WINDOW_NAME, annotated[:, :, ::-1])
                    cv2.waitKey(WINDOW_WAIT_MS)
                if args.save_frames:
                    frame_file = frames_dir / f"{instances.frame_index:05d}.jpg"
                    if not cv2.imwrite(str(frame_file), annotated[:, :, ::-1]):
                        raise OSError(errno.EIO, "OpenCV cannot write a frame", str(frame_file))
                progress.update()
            seconds = time.perf_counter() - start
            if live:
                source.stop(f"--max-frames {args.max_frames} reached")  # unless it stopped before
            with SubmissionWriter(staged.path(results_path)) as results:
                results.write(spool.entries(video_id=1, category_ids=predictor.category_ids))
    dropped = f", {source.dropped} dropped" if live else ""
    logged = f", {tracks_path}" if tracks_path else ""
    if live:
        print(f"stopped: {source.stop_reason}")
    print(
        f"{spool.num_frames} frames in {seconds:.1f} s ({spool.num_frames / seconds:.2f} frames/s){dropped}, "
        f"{spool.num_tracks} tracks -> {video_path}, {results_path}{logged}"
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
