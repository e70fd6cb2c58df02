"""Time multi-scale deformable attention: the compiled kernels vs the grid_sample fallback.

Shapes are those of the pixel-decoder encoder of an R50 model on a 384x640 frame: three
levels of 256 channels at strides 8, 16 and 32, one query per position, 8 heads, 4 points
sampled around the query's own position (about 2 pixels away, as in a trained encoder).
Rows: this project's CPU inference kernel (forward only), the ``torch-ms-deform-attn``
package's kernel and the fallback. Prints a markdown table of milliseconds per call
(median over the repeats).

    python tools/benchmarks/benchmark_ms_deform_attn.py [--batch-sizes 1 4] [--repeats 5]
"""

import argparse
import statistics
import time
from collections.abc import Callable
from importlib import metadata

import torch
from machine_info import cpu_name

from mask2former.modeling.pixel_decoder.ms_deform_attn_op import (
    compiled_available,
    cpu_kernel_available,
    ms_deform_attn,
)

IMAGE_SIZE = (384, 640)
STRIDES = (8, 16, 32)
CHANNELS = 256
HEADS = 8
POINTS = 4


def pixel_centres(height: int, width: int) -> torch.Tensor:
    """[H * W, 2] (x, y) of each pixel's centre in [0, 1], row by row."""
    rows = (torch.arange(height) + 0.5) / height
    columns = (torch.arange(width) + 0.5) / width
    ys, xs = torch.meshgrid(rows, columns, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], -1)


def make_inputs(batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    shapes = [(IMAGE_SIZE[0] // s, IMAGE_SIZE[1] // s) for s in STRIDES]
    spatial_shapes = torch.tensor(shapes, dtype=torch.long, device=device)  # [L, 2]
    starts = torch.cat((spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))
    total = sum(h * w for h, w in shapes)  # encoder: every position is a query
    levels = len(shapes)
    value = torch.randn(batch, total, HEADS, CHANNELS // HEADS, device=device)
    # Each query's own position (x, y) in [0, 1], then a spread of about 2 pixels of the finest level.
    reference = torch.cat([pixel_centres(h, w) for h, w in shapes]).to(device)  # [S, 2]
    spread = 2.0 / torch.tensor([shapes[0][1], shapes[0][0]], device=device)
    locations = reference[None, :, None, None, None, :] + spread * torch.randn(
        batch, total, HEADS, levels, POINTS, 2, device=device
    )
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


def benchmark(impl: str, batch: int, device: torch.device, repeats: int) -> tuple[float, float | None]:
    """Forward and forward+backward ms of ``impl``: ``cpu kernel`` (forward only),
    ``package`` or ``pytorch``."""
    value, spatial_shapes, starts, locations, weights = make_inputs(batch, device)
    if impl == "package":
        from torch_ms_deform_attn import ms_deform_attn as attend
    else:

        def attend(*inputs: torch.Tensor) -> torch.Tensor:
            return ms_deform_attn(*inputs, impl="compiled" if impl == "cpu kernel" else "pytorch")

    def forward() -> None:
        with torch.no_grad():
            attend(value, spatial_shapes, starts, locations, weights)

    leaves = [t.detach().requires_grad_(True) for t in (value, locations, weights)]

    def forward_backward() -> None:
        output = attend(leaves[0], spatial_shapes, starts, leaves[1], leaves[2])
        output.sum().backward()
        for leaf in leaves:
            leaf.grad = None

    backward = None if impl == "cpu kernel" else median_ms(forward_backward, repeats, device)
    return median_ms(forward, repeats, device), backward


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
        impls = ["cpu kernel"] if device.type == "cpu" and cpu_kernel_available() else []
        impls += ["package"] if compiled_available(device) else []
        for batch in args.batch_sizes:
            for impl in [*impls, "pytorch"]:
                fwd, fwd_bwd = benchmark(impl, batch, device, args.repeats)
                backward = "" if fwd_bwd is None else f"{fwd_bwd:.1f}"
                print(f"| {device.type} | {batch} | {impl} | {fwd:.1f} | {backward} |")


if __name__ == "__main__":
    main()
