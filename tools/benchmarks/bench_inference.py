#!/usr/bin/env python
"""Inference: speed and memory (beside the official release), precision, the GPU run.

    bench_inference.py speed [--models r50] [--frames 30 120] [--official-frames 30]
        [--paths default bounded streaming] [--repeats 2] [--device cuda] [--height H --width W]
    bench_inference.py precision [--config r50] [--frames 4] [--repeats 4] [--low bf16|fp16]
    bench_inference.py parity [--precision fp32 bf16]
    bench_inference.py accuracy --config-file CFG --weights W [--low bf16|fp16] [--device cpu]
    bench_inference.py onnx [--config r50] [--frames 30] [--repeats 2]
    bench_inference.py gpu [--models r50 swinl] [--frames 30 120 480] [--deviation-frames 30]
        [--train-steps 10]

speed: synthetic videos at the models' test sizes, random weights (seed 0), every run in a
fresh process (its own peak RSS), rounds alternating, medians. Paths: ``default``, the
official call ``model([{"image": frames, "height": H, "width": W}])`` and its dense masks;
``bounded``, frames from a generator through ``model.track_video``, masks RLE-encoded frame
by frame (as the evaluator does); ``streaming``, ``model.track_stream`` (the predictor's;
latency between frames). ``--official-frames`` adds the official release (``source
/tmp/minvis_official/env.sh``; ``../shared/official_baseline/infer_run.py``: same weights
and frames, its CPU paths) and compares the outputs. precision: fp32 and ``--low`` on the same
weights, alternating in one process, and their output deviation. parity: deviation from the
official outputs of the parity fixture. accuracy: a trained model's AP on its test videos
in fp32 and ``--low`` (``train_net.py --eval-only`` for each, as a user runs it; the datasets
where ``DETECTRON2_DATASETS`` says), and every fp32 track paired with one of ``--low``.
onnx: the model exported by
``tools/export/export_model.py`` in ONNX Runtime beside PyTorch fp32 and bf16 (same weights,
alternating in one process). gpu: ``profile_model.py msda``, ``precision --low fp16``,
``speed --paths default streaming``, and ``bench_training.py`` of the first model without
and with AMP, on ``--device``; ``--device cpu --models tiny --frames 2 --deviation-frames 2
--repeats 1 --train-steps 1`` is its dry run (bf16).
"""

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from statistics import median
from typing import Any

import harness
import numpy as np
import torch
from pycocotools import mask as mask_util

from minvis.config import build_config
from minvis.modeling.exported import build_exported_model
from minvis.ytvis_format import encode_masks

PATHS = ("default", "bounded", "streaming")
SIDES = ("ours", "official")
GPU_PATHS = ("default", "streaming")  # the GPU run's: the official call and the predictor's
FIXTURE = harness.SHARED / "fixtures" / "parity_ytvis19_r50tiny_s0.pth"
EXPORT_SCRIPT = harness.REPO / "tools" / "export" / "export_model.py"
OFFICIAL_RESULT = re.compile(r"RESULT seconds=[0-9.]+ per_frame_ms=([0-9.]+) peak_rss_mb=([0-9]+)")


@torch.no_grad()
def measure(model: str, path: str, frames: int, size: list[int], device: str, threads: int, out: str) -> dict:
    """One run of ours in this (fresh) process; the default path saves its outputs to ``out``."""
    torch.set_num_threads(threads)
    net = harness.build(harness.MODELS[model][0], device)
    video, latencies = harness.synthetic_frames(frames, *size), []
    start = last = time.perf_counter()
    if path == "streaming":
        for _ in net.track_stream(video):
            latencies.append(time.perf_counter() - last)
            last = time.perf_counter()
    elif path == "bounded":
        for masks in net.track_video({"image": video, "height": size[0], "width": size[1]}).frame_masks():
            encode_masks(masks.numpy())
    else:
        result = net([{"image": list(video), "height": size[0], "width": size[1]}])
        masks = result["pred_masks"]  # built when read
    seconds = time.perf_counter() - start
    if path == "default":
        torch.save({**result, "pred_masks": torch.stack(masks) if masks else torch.zeros(0)}, out)
    return {
        "per_frame_ms": 1e3 * seconds / frames,
        "latency_ms": 1e3 * median(latencies[1:]) if len(latencies) > 1 else None,
        "peak_rss_mb": harness.peak_rss_mb(),
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / harness.MB if device.startswith("cuda") else None,
    }


def official(model: str, frames: int, size: tuple[int, int], weights_dir: str, out: Path) -> dict:
    """One run of the official release (a whole process; peak RSS from ``ru_maxrss``)."""
    runner = harness.SHARED / "official_baseline" / "infer_run.py"
    config = harness.MODELS[model][0].relative_to(harness.REPO)
    args = [config, Path(weights_dir, f"{model}.pth"), frames, *size, out, "MODEL.WEIGHTS", ""]
    per_frame_ms, peak_rss_mb = harness.run_release(True, runner, args, OFFICIAL_RESULT)
    return {"per_frame_ms": per_frame_ms, "peak_rss_mb": peak_rss_mb}

def speed(args: argparse.Namespace) -> None:
    if args.official_frames and not set(harness.OFFICIAL_ENV) <= set(os.environ):
        sys.exit("bench_inference: source /tmp/minvis_official/env.sh first (or no --official-frames)")
    runs: dict[tuple, list[dict]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        saved = lambda side, model, frames: Path(tmp, f"{side}_{model}_{frames}.pth")  # noqa: E731
        for model in args.models if args.official_frames else []:  # the weights both load
            torch.save(harness.build(harness.MODELS[model][0]).state_dict(), Path(tmp, f"{model}.pth"))
        lengths = sorted(set(args.frames) | set(args.official_frames))
        for _, model, frames in itertools.product(range(args.repeats), args.models, lengths):
            size = harness.config_and_size(model, args)[1]
            for path in args.paths if frames in args.frames else []:
                out = str(saved("ours", model, frames))
                payload = {"model": model, "path": path, "frames": frames, "size": size, "out": out}
                payload |= {"device": args.device, "threads": args.threads}
                runs["this project", model, path, frames].append(harness.run_worker(__file__, payload))
            if frames in args.official_frames:
                out = saved("official", model, frames)
                runs["official", model, "default", frames].append(official(model, frames, size, tmp, out))
        both = sorted(set(args.frames) & set(args.official_frames)) if "default" in args.paths else []
        compared = {
            (model, frames): harness.compare_outputs(*(torch.load(saved(s, model, frames)) for s in SIDES))
            for model in args.models
            for frames in both
        }
    print(f"{harness.machine_line(args.device)}; medians of {args.repeats} alternating runs\n")
    print(speed_table(runs))
    for (model, frames), comparison in compared.items():
        print(f"\n{model}, {frames} frames, ours vs official: {harness.summary(comparison)}")


def speed_table(runs: dict[tuple, list[dict]]) -> str:
    rows, shortest = [], {}
    for (code, model, path, frames), measured in sorted(runs.items(), key=lambda item: item[0][3]):
        value = {k: None if v is None else median(r[k] for r in measured) for k, v in measured[0].items()}
        first = shortest.setdefault((code, model, path), (frames, value["peak_rss_mb"]))
        peak, optional = value["peak_rss_mb"], [value.get(key) for key in ("latency_ms", "cuda_peak_mb")]
        rows.append([code, model, path, frames, f"{value['per_frame_ms'] / 1e3:.2f}", f"{peak:.0f}",
                     f"{peak / first[1]:.2f}x vs {first[0]}", *(f"{v:.0f}" if v else "-" for v in optional)])
    header = ["code", "model", "path", "frames", "s/frame", "peak RSS MB", "peak vs shortest", "latency ms"]
    header.append("CUDA peak MB")
    return harness.table(header, sorted(rows, key=lambda row: row[:3]))


def alternate_calls(models: dict[str, torch.nn.Module], args: argparse.Namespace, config: Path,
                    size: tuple[int, int]) -> tuple[dict[str, list[float]], dict[str, Any]]:  # fmt: skip
    """ms/frame of each model's default call (dense masks included) on one synthetic video, in
    alternating runs; prints their table and returns the runs and each model's last result."""
    frames, results = list(harness.synthetic_frames(args.frames, *size)), {}
    video = [{"image": frames, "height": size[0], "width": size[1]}]

    def call(name: str) -> None:
        results[name] = models[name](video)
        results[name]["pred_masks"]  # noqa: B018  (the dense masks are part of the call)

    with torch.no_grad():
        seconds = harness.alternate({n: lambda n=n: call(n) for n in models}, args.repeats, args.device)
    runs = {name: [1e3 * s / args.frames for s in seconds[name]] for name in models}
    rows = [[name, f"{median(ms):.0f}", ", ".join(f"{m:.0f}" for m in ms)] for name, ms in runs.items()]
    print(f"{harness.machine_line(args.device)}\n{config.name}, {args.frames} frames {size[0]}x{size[1]}, "
          f"{args.repeats} alternating runs\n")  # fmt: skip
    print(harness.table(["model", "ms/frame (median)", "runs (ms/frame)"], rows))
    return runs, results


def print_speedup(runs: dict[str, list[float]], fast: str, slow: str) -> None:
    pairs = ", ".join(f"{a / b:.2f}x" for a, b in zip(runs[slow], runs[fast], strict=True))
    print(f"{fast} speed-up: {median(runs[slow]) / median(runs[fast]):.2f}x over {slow} (per pair: {pairs})")


def precision(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    config, size = harness.config_and_size(args.config, args)
    names = ("fp32", args.low)
    models = {n: harness.build(config, args.device, ["MODEL.MASK_FORMER.TEST.PRECISION", n]) for n in names}
    runs, results = alternate_calls(models, args, config, size)
    print()
    print_speedup(runs, args.low, "fp32")
    deviation = harness.compare_outputs(results[args.low], results["fp32"])
    print(f"{args.low} vs fp32 outputs: {harness.summary(deviation)}")


def video_results(predictions: list[dict]) -> dict[int, dict[str, list]]:
    """``results.json`` predictions as one dense result per video (masks [T, H, W] bool)."""
    videos: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for prediction in predictions:
        segmentations = prediction["segmentations"]
        height, width = next(s["size"] for s in segmentations if s)
        empty = np.zeros((height, width), np.uint8)
        masks = np.stack([mask_util.decode(s) if s else empty for s in segmentations]).astype(bool)
        video = videos[prediction["video_id"]]
        video["pred_scores"].append(prediction["score"])
        video["pred_labels"].append(prediction["category_id"])
        video["pred_masks"].append(masks)
    return videos


def accuracy(args: argparse.Namespace) -> None:
    evaluated = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("fp32", args.low):
            out = Path(tmp, name)
            command = [sys.executable, harness.REPO / "train_net.py", "--config-file", args.config_file,
                       "--eval-only", "MODEL.WEIGHTS", args.weights, "MODEL.DEVICE", args.device,
                       "MODEL.MASK_FORMER.TEST.PRECISION", name, "OUTPUT_DIR", out]  # fmt: skip
            done = subprocess.run(list(map(str, command)), cwd=harness.REPO, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"bench_inference accuracy: --eval-only in {name} failed:\n{done.stderr[-3000:]}")
            metrics = json.loads((out / "inference" / "metrics.json").read_text())
            predictions = json.loads((out / "inference" / "results.json").read_text())
            evaluated[name] = (metrics, video_results(predictions))
    print(f"{harness.machine_line(args.device)}\n{args.config_file}, {args.weights}\n")
    keys = ("AP", "AP50", "AP75")
    rows = [[name, *(f"{100 * metrics[k]:.2f}" for k in keys)] for name, (metrics, _) in evaluated.items()]
    print(harness.table(["precision", *keys], rows))
    low, reference = evaluated[args.low][1], evaluated["fp32"][1]
    for threshold in (0.0, 0.5):  # all tracks (each video's top ones), then the confident ones
        pairs = [
            pair
            for video, result in reference.items()
            for pair, score in zip(harness.pair_instances(result, low[video]), result["pred_scores"])
            if score >= threshold
        ]
        ious = np.array([iou for _, _, iou in pairs])
        print(f"\nfp32 tracks scoring >= {threshold} ({len(pairs)} in {len(reference)} videos) vs "
              f"{args.low}: same label {100 * np.mean([same for same, _, _ in pairs]):.1f}%, mask IoU median "
              f"{np.median(ious):.3f}, min {ious.min():.3f}, >= 0.9 for {100 * np.mean(ious >= 0.9):.1f}%, "
              f"max score difference {max(difference for _, difference, _ in pairs):.3f}")  # fmt: skip


def onnx(args: argparse.Namespace) -> None:
    """The exported model in ONNX Runtime beside the PyTorch fp32 and bf16 paths, same weights."""
    torch.set_num_threads(args.threads)
    config, size = harness.config_and_size(args.config, args)
    precisions = ("fp32", "bf16")
    models = {n: harness.build(config, "cpu", ["MODEL.MASK_FORMER.TEST.PRECISION", n]) for n in precisions}
    with tempfile.TemporaryDirectory() as tmp:
        weights, folder = Path(tmp, "weights.pth"), Path(tmp, "exported")
        torch.save({"model": models["fp32"].state_dict()}, weights)
        command = [sys.executable, EXPORT_SCRIPT, "--config-file", config, "--output", folder,
                   "--opts", "MODEL.WEIGHTS", weights]  # fmt: skip
        subprocess.run(list(map(str, command)), check=True)
        models["onnx"] = build_exported_model(build_config(str(folder / "config.yaml")))
    runs, results = alternate_calls(models, args, config, size)
    print()
    for name in ("onnx", "bf16"):
        print_speedup(runs, name, "fp32")
        deviation = harness.compare_outputs(results[name], results["fp32"])
        print(f"{name} vs fp32 outputs: {harness.summary(deviation)}")


@torch.no_grad()
def parity(args: argparse.Namespace) -> None:
    fixture = torch.load(FIXTURE, weights_only=True)
    frames, rows = [f.float() for f in fixture["input"]["frames"]], []
    video = [{"image": frames, "height": fixture["input"]["height"], "width": fixture["input"]["width"]}]
    for name in args.precision:
        overrides = [*fixture["config_overrides"], "MODEL.MASK_FORMER.TEST.PRECISION", name]
        model = harness.build(harness.REPO / "configs" / fixture["base_config"], "cpu", overrides)
        model.load_state_dict(fixture["state_dict"], strict=True)
        raw = list(model.frame_outputs(frames))
        stacked = {key: torch.stack([getattr(f, key) for f in raw]) for key in ("logits", "masks", "embds")}
        errors = [(x - fixture["raw"][f"pred_{key}"]).abs().max().item() for key, x in stacked.items()]
        rows.append([name, *harness.compare_outputs(model(video), fixture["output"]).values(), *errors])
    header = ["precision", "labels equal", "max score error", "min mask IoU", "max logit error"]
    print(harness.table([*header, "max mask-logit error", "max embedding error"], rows))


def gpu(args: argparse.Namespace) -> None:
    device = ["--device", args.device, "--threads", args.threads]
    common = [*device, "--repeats", args.repeats]
    size = [f"--{key}={getattr(args, key)}" for key in ("height", "width") if getattr(args, key)]
    low = "fp16" if args.device.startswith("cuda") else "bf16"
    msda = [Path(__file__).with_name("profile_model.py"), "msda", "--batch-sizes", 1, *common]
    precision = [__file__, "precision", "--low", low, "--config", args.models[0], *size, *common]
    speed = [__file__, "speed", "--models", *args.models, "--paths", *GPU_PATHS, *size, *common]
    training = [Path(__file__).with_name("bench_training.py"), "--models", args.models[0], *device,
                "--warmup", 1, "--iters", args.train_steps]  # fmt: skip
    for command in (msda, [*precision, "--frames", args.deviation_frames], [*speed, "--frames", *args.frames],
                    [*training, "--no-amp"], [*training, "--amp"]):  # fmt: skip
        print(flush=True)
        subprocess.run([sys.executable, *map(str, command)], check=True)


def main() -> None:
    parser = harness.make_parser(__doc__)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command")
    command = commands.add_parser("speed", help="speed and peak memory against the video length")
    harness.add_common(command, frames=[30, 120], repeats=2, models=True)
    command.add_argument("--official-frames", type=int, nargs="*", default=[], help="lengths, official")
    command.add_argument("--paths", nargs="+", choices=PATHS, default=["default"])
    command = commands.add_parser("precision", help="fp32 against bf16 or fp16, alternating")
    harness.add_common(command, frames=4, repeats=4)
    command.add_argument("--low", choices=("bf16", "fp16"), default="bf16")
    command = commands.add_parser("parity", help="deviation from the official outputs, per precision")
    command.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    command = commands.add_parser("accuracy", help="a trained model's AP and tracks, fp32 against --low")
    command.add_argument("--config-file", required=True, help="the model's config (the test datasets)")
    command.add_argument("--weights", required=True)
    command.add_argument("--low", choices=("bf16", "fp16"), default="bf16")
    command.add_argument("--device", default="cpu")
    command = commands.add_parser("onnx", help="the exported model in ONNX Runtime vs PyTorch fp32 and bf16")
    harness.add_common(command, frames=30, repeats=2)
    command = commands.add_parser("gpu", help="the CUDA run: MSDeformAttn, fp16, speed and memory")
    harness.add_common(command, frames=[30, 120, 480], repeats=3, models=True)
    command.set_defaults(models=["r50", "swinl"], device="cuda")
    command.add_argument("--deviation-frames", type=int, default=30)
    command.add_argument("--train-steps", type=int, default=10, help="timed training steps, fp32 and AMP")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(**json.loads(args.worker))))
    elif args.command == "gpu" and args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench_inference gpu: no CUDA device here (--device cpu for a dry run)")
    elif args.command:
        run_command = {"speed": speed, "precision": precision, "parity": parity, "onnx": onnx, "gpu": gpu}
        run_command["accuracy"] = accuracy
        run_command[args.command](args)
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
