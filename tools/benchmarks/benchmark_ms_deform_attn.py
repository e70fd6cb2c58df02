"""Time multi-scale deformable attention: compiled kernel vs grid_sample fallback.

Shapes are those of the pixel-decoder encoder of an R50 model on a 384x640 frame: three
levels of 256 channels at strides 8, 16 and 32, one query per position, 8 heads, 4 points.
Prints a markdown table of milliseconds per call (median over the repeats).

    python tools/benchmarks/benchmark_ms_deform_attn.py [--batch-sizes 1 4] [--repeats 5]
"""

import argparse
import statistics
import time
from collections.abc import Callable
from importlib import metadata

import torch
from machine_info import cpu_name

from mask2former.modeling.pixel_decoder.ms_deform_attn_op import compiled_available, ms_deform_attn

IMAGE_SIZE = (384, 640)
STRIDES = (8, 16, 32)
CHANNELS = 256
HEADS = 8
POINTS = 4




def make_inputs(batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    shapes = [(IMAGE_SIZE[0] // s, IMAGE_SIZE[1] // s) for s in STRIDES]
    spatial_shapes = torch.tensor(shapes, dtype=torch.long, device=device)  # [L, 2]
    starts = torch.cat((spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))
    total = sum(h * w for h, w in shapes)  # encoder: every position is a query
    levels = len(shapes)
    value = torch.randn(batch, total, HEADS, CHANNELS // HEADS, device=device)
    locations = torch.rand(batch, total, HEADS, levels, POINTS, 2, device=device)
    weights = torch.rand(batch, total, HEADS, levels * POINTS, device=device).softmax(-1)
    weights = weights.view(batch, total, HEADS, levels, POINTS)
    return value, spatial_shapes, starts, locations, weights


def median_ms(step: Callable[[], None], repeats: int, device: torch.device) -> float:
    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        step()
        synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def benchmark(impl: str, batch: int, device: torch.device, repeats: int) -> tuple[float, float]:
    value, spatial_shapes, starts, locations, weights = make_inputs(batch, device)

    def forward() -> None:
        with torch.no_grad():
            ms_deform_attn(value, spatial_shapes, starts, locations, weights, impl=impl)

    leaves = [t.detach().requires_grad_(True) for t in (value, locations, weights)]

    def forward_backward() -> None:
        output = ms_deform_attn(leaves[0], spatial_shapes, starts, leaves[1], leaves[2], impl=impl)
        output.sum().backward()
        for leaf in leaves:
            leaf.grad = None

    return median_ms(forward, repeats, device), median_ms(forward_backward, repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    try:
        package = f"torch-ms-deform-attn {metadata.version('torch-ms-deform-attn')}"
    except metadata.PackageNotFoundError:
        package = "torch-ms-deform-attn not installed"
    print(f"CPU: {cpu_name()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {package}")
    if torch.cuda.is_available():
        print(f"CUDA: {torch.cuda.get_device_name()}")
    levels = ", ".join(f"{IMAGE_SIZE[0] // s}x{IMAGE_SIZE[1] // s}" for s in STRIDES)
    print(f"levels {levels}, {CHANNELS} channels, {HEADS} heads, {POINTS} points\n")

    print("| device | batch | implementation | forward (ms) | forward+backward (ms) |")
    print("|---|---:|---|---:|---:|")
    for device in devices:
        impls = ["compiled", "pytorch"] if compiled_available(device) else ["pytorch"]
        for batch in args.batch_sizes:
            for impl in impls:
                fwd, fwd_bwd = benchmark(impl, batch, device, args.repeats)
                print(f"| {device.type} | {batch} | {impl} | {fwd:.1f} | {fwd_bwd:.1f} |")


if __name__ == "__main__":
    main()
