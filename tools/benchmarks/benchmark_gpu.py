#!/usr/bin/env python
"""The CUDA benchmark, in one run of a few minutes on one GPU.

    python tools/benchmarks/benchmark_gpu.py [--frames 30 120 480] [--models r50 swinl]
        [--deviation-frames 30] [--device cuda]

(``--device cpu --models tiny --frames 2 --deviation-frames 2 --repeats 1`` runs the same code on a CPU
in seconds, with bfloat16 autocast: the test suite does that, so the script stays runnable.)

Needs the project set up on a CUDA machine (``TORCH_SPEC=skip bash tools/setup/setup.sh``
keeps the machine's torch; the deformable-attention kernel is compiled for CUDA when
``nvcc`` is there). Prints three markdown tables:

1. **MSDeformAttn kernel**: whether torch-ms-deform-attn's kernel is built for the device,
   and its forward/backward against the pure-PyTorch implementation on the R50 level sizes
   of a 384x640 input (max error, ms).
2. **float32 vs autocast**: the paper-exact video result of the first of ``--models``
   (random weights, seed 0) on ``--deviation-frames`` synthetic frames in float32 and under
   ``torch.autocast(float16)``, as the official evaluation runs it (``TEST.AMP.ENABLED``):
   labels equal, max score difference, min mask IoU of instances paired by rank.
3. **speed and memory**: ``benchmark_inference.py`` on the device for R50 and Swin-L at
   their official test sizes (``--min-size 0``), the default call and the streaming
   predictor, at each of ``--frames``: frames/s and peak CUDA memory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from benchmark_inference import CONFIGS, synthetic_video

from mask2former.modeling.pixel_decoder.ms_deform_attn_op import (
    compiled_available,
    ms_deform_attn,
    ms_deform_attn_pytorch,
)
from minvis.config import build_config
from minvis.data.video_io import open_frame_source
from minvis.predictor import VideoPredictor

HERE = Path(__file__).resolve().parent
# R50 at 384x640: strides 8, 16, 32 of the deformable encoder; 8 heads of 32 channels, 4 points.
MSDA_LEVELS = ((48, 80), (24, 40), (12, 20))
MSDA_HEADS, MSDA_HEAD_DIM, MSDA_POINTS = 8, 32, 4


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn: Callable[[], object], device: str, repeats: int = 20) -> float:
    fn()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return 1e3 * (time.perf_counter() - start) / repeats


def autocast_dtype(device: str) -> torch.dtype:
    """The official evaluation's float16 on CUDA; bfloat16 (the CPU's autocast type) elsewhere."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def msda_table(device: str, repeats: int) -> str:
    if not compiled_available(device):
        return (
            f"torch-ms-deform-attn's kernel is not built for {device}: install it with "
            "`pip install --no-build-isolation torch-ms-deform-attn==0.1.1` where nvcc is "
            "available; the model then uses the pure-PyTorch path."
        )
    generator = torch.Generator(device).manual_seed(0)  # [1, S, M, D], [1, S, M, L, P, 2], [1, S, M, L, P]
    shapes = torch.tensor(MSDA_LEVELS, device=device)
    sizes = shapes.prod(1)
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    tokens = int(sizes.sum())
    value = torch.randn(1, tokens, MSDA_HEADS, MSDA_HEAD_DIM, device=device, generator=generator)
    sampling = (1, tokens, MSDA_HEADS, len(MSDA_LEVELS), MSDA_POINTS)
    locations = torch.rand(*sampling, 2, device=device, generator=generator)
    weights = torch.rand(*sampling, device=device, generator=generator)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    rows = []
    results = {}
    for name, fn in (
        ("compiled", lambda v, loc, w: ms_deform_attn(v, shapes, starts, loc, w, impl="compiled")),
        ("pytorch", lambda v, loc, w: ms_deform_attn_pytorch(v, shapes, loc, w)),
    ):
        inputs = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
        out = fn(*inputs)
        out.square().sum().backward()
        results[name] = (out.detach(), [t.grad for t in inputs])
        forward = timed_ms(lambda fn=fn: fn(value, locations, weights), device, repeats)
        both = timed_ms(lambda fn=fn, inputs=inputs: fn(*inputs).square().sum().backward(), device, repeats)
        rows.append(f"| {name} | {forward:.2f} | {both:.2f} |")
    def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).abs().max() / b.abs().max()).item()

    error = relative_error(results["compiled"][0], results["pytorch"][0])
    grad_error = max(
        relative_error(a, b) for a, b in zip(results["compiled"][1], results["pytorch"][1], strict=True)
    )
    return "\n".join(
        [
            "| MSDeformAttn (batch 1, R50 levels at 384x640) | forward ms | forward+backward ms |",
            "|---|---:|---:|",
            *rows,
            f"\nmax |compiled - pytorch| / max |pytorch|: output {error:.1e}, gradients {grad_error:.1e}",
        ]
    )


def video_result(predictor: VideoPredictor, frames: list[torch.Tensor], height: int, width: int) -> dict:
    with torch.no_grad():
        return predictor.model([{"image": frames, "height": height, "width": width}])


def deviation_table(model: str, device: str, num_frames: int, folder: Path) -> str:
    cfg = build_config(str(CONFIGS[model]), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device])
    torch.manual_seed(0)
    predictor = VideoPredictor.from_config(cfg)
    source = open_frame_source(str(synthetic_video(folder, num_frames)))
    frames = [predictor.preprocess(frame) for frame in source]
    height, width = source.info.height, source.info.width
    reference = video_result(predictor, frames, height, width)
    dtype = autocast_dtype(device)
    with torch.autocast(torch.device(device).type, dtype=dtype):
        autocast = video_result(predictor, frames, height, width)
    by_rank = [
        sorted(range(len(r["pred_scores"])), key=lambda i, r=r: -r["pred_scores"][i])
        for r in (reference, autocast)
    ]
    score_diff, min_iou = 0.0, 1.0
    for i, j in zip(*by_rank, strict=True):
        score_diff = max(score_diff, abs(reference["pred_scores"][i] - autocast["pred_scores"][j]))
        a, b = reference["pred_masks"][i], autocast["pred_masks"][j]
        union = (a | b).sum().item()
        min_iou = min(min_iou, 1.0 if union == 0 else (a & b).sum().item() / union)
    labels_equal = sorted(reference["pred_labels"]) == sorted(autocast["pred_labels"])
    return "\n".join(
        [
            f"| {model}, {num_frames} frames | labels equal | max score diff. | min mask IoU (by rank) |",
            "|---|---|---:|---:|",
            f"| {dtype} autocast vs float32 | {labels_equal} | {score_diff:.2e} | {min_iou:.4f} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[30, 120, 480])
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=["r50", "swinl"])
    parser.add_argument("--deviation-frames", type=int, default=30)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=20, help="timed MSDeformAttn calls")
    args = parser.parse_args()
    if torch.device(args.device).type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("benchmark_gpu: no CUDA device here (pass --device cpu for a CPU dry run)")
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}\n")
    print(msda_table(args.device, args.repeats), "\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        table = deviation_table(args.models[0], args.device, args.deviation_frames, Path(tmp))
        print(table, "\n", flush=True)
    command = [
        sys.executable, str(HERE / "benchmark_inference.py"), "--device", args.device,
        "--models", *args.models, "--frames", *map(str, args.frames), "--r50-frames", *map(str, args.frames),
        "--sources", "synthetic", "--r50-sources", "synthetic",
        "--paths", "default", "streaming", "--min-size", "0",
    ]  # fmt: skip
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
