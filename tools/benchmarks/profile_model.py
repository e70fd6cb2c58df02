#!/usr/bin/env python
"""Where the time goes: a per-stage profile against the GEMM rate; the deformable-attention kernels.

    profile_model.py stages [--config r50] [--frames 4] [--repeats 3] [--precision fp32|bf16] [OPTS ...]
    profile_model.py msda [--batch-sizes 1 4] [--repeats 5] [--device cpu|cuda]

stages: the default call on a synthetic video after a warm-up, with timers around the
backbone, pixel decoder, its MSDeformAttn layers, transformer decoder and its mask
predictions; the rest is tracking and post-processing. GFLOP/frame: fvcore on one padded
frame plus hand counts of what it cannot see. The GEMM rate (4096^3 ``torch.matmul``, the
higher of before and after the runs) and the encoder FFN's matmul rate are measured in the
same run. OPTS: config overrides. msda: the encoder's deformable attention of a 384x640
frame per batch item (points about 2 pixels around each query, from reference points,
offsets and attention logits as the layer calls it): this project's CPU kernel, the
package's kernel and the ``grid_sample`` fallback, forward and forward + backward, with
errors relative to the fallback.
"""

import argparse
import functools
import time
from collections import defaultdict
from collections.abc import Callable
from importlib import metadata
from statistics import median

import harness
import torch

from mask2former.modeling.pixel_decoder import ms_deform_attn_op as op
from mask2former.modeling.pixel_decoder.ms_deform_attn import MSDeformAttn

GEMM = 4096
ROWS = {  # table row -> timer key; the network's rows are compared with the GEMM rate
    "backbone": "backbone",
    "pixel decoder (excl. MSDeformAttn)": "pixel_decoder_rest",
    "MSDeformAttn": "msda",
    "transformer decoder (excl. mask prediction)": "decoder_rest",
    "mask embedding + mask prediction": "mask_pred",
    "input normalisation and padding": "input",
    "**network total**": "network",
    "tracking + post-processing": "tracking",
    "**whole call**": "total",
}
MSDA_SIZE, MSDA_STRIDES, MSDA_CHANNELS, MSDA_HEADS, MSDA_POINTS = (384, 640), (8, 16, 32), 256, 8, 4
Size = tuple[int, int]


def gemm_gflops(dtype: torch.dtype, m: int = GEMM, k: int = GEMM, n: int = GEMM) -> float:
    """GFLOP/s of an ``[m, k] @ [k, n]`` matmul, the best of 5."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    return 2 * m * k * n / min(harness.alternate({"": lambda: a @ b}, 5, "cpu")[""]) / 1e9


def pixels(padded: Size, stride: int) -> int:
    return (padded[0] // stride) * (padded[1] // stride)


def gflop_per_frame(model: torch.nn.Module, padded: Size) -> dict[str, float]:
    """GFLOP (2 x multiply-accumulates) per frame of the network's rows: fvcore plus hand counts."""
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import addmm_flop_jit

    head, image = model.sem_seg_head, torch.zeros(1, 3, *padded)
    counts = [FlopCountAnalysis(model.backbone, image), FlopCountAnalysis(head, (model.backbone(image),))]
    for count in counts:
        count.set_op_handle("aten::addmm_", addmm_flop_jit)  # MSDeformAttn's sampling offsets
        count.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    by_module = counts[1].by_module()
    msda_names = [name for name, m in head.named_modules() if isinstance(m, MSDeformAttn)]
    msda_linear = sum(by_module.get(name, 0) for name in msda_names)
    # Deformable sampling: every encoder position is a query; per head, level and point 4
    # bilinear taps and one weight on each channel.
    pixel_decoder, predictor = head.pixel_decoder, head.predictor
    strides = sorted(pixel_decoder.transformer_feature_strides, reverse=True)
    attn = pixel_decoder.transformer.encoder.layers[0].self_attn
    sampling = sum(pixels(padded, s) for s in strides) * attn.n_levels * attn.n_points * attn.d_model * 5
    # Mask prediction for the learnable queries and after each layer: class head and mask MLP,
    # then products with the mask features, at 1/4 size for the last prediction, at the next
    # layer's attention size (coarsest level first, round-robin) for the others.
    q, c = predictor.num_queries, predictor.mask_embed.layers[-1].out_features
    mlp = sum(layer.in_features * layer.out_features for layer in predictor.mask_embed.layers)
    per_step = q * (predictor.class_embed.in_features * predictor.class_embed.out_features + mlp)
    attention_sizes = sum(pixels(padded, strides[k % len(strides)]) for k in range(predictor.num_layers))
    quarter = pixels(padded, pixel_decoder.common_stride)
    mask_pred = per_step * (predictor.num_layers + 1) + q * c * (quarter + attention_sizes)
    macs = {
        "backbone": counts[0].total(),
        "pixel_decoder_rest": by_module.get("pixel_decoder", 0) - msda_linear,
        "msda": msda_linear + sampling * len(msda_names),
        # fvcore sees the decoder's einsum but not always its MLP calls: take the larger.
        "decoder_rest": max(by_module.get("predictor", 0) - mask_pred, 0),
        "mask_pred": mask_pred,
    }
    return {key: 2 * value / 1e9 for key, value in {**macs, "network": sum(macs.values())}.items()}


def timer(fn: Callable, key: str, seconds: dict[str, float]) -> Callable:
    """``fn``, adding its wall time to ``seconds[key]``."""

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - start

    return timed


@torch.no_grad()
def profile_once(model: torch.nn.Module, video: list[dict]) -> dict[str, float]:
    """Seconds of each row in one call, from timers wrapped around the model's parts."""
    head, s = model.sem_seg_head, defaultdict(float)
    methods = [(model, "_to_image_list", "input"), (model.backbone, "forward", "backbone"),
               (head.pixel_decoder, "forward", "pixel_decoder"), (head.predictor, "forward", "decoder"),
               (head.predictor, "_predict", "mask_pred")]  # fmt: skip
    methods += [(m, "forward", "msda") for m in model.modules() if isinstance(m, MSDeformAttn)]
    for obj, name, key in methods:
        setattr(obj, name, timer(getattr(obj, name), key, s))
    try:
        start = time.perf_counter()
        model(video)["pred_masks"]  # noqa: B018  (the dense masks are part of the call)
        total = time.perf_counter() - start
    finally:
        for obj, name, _ in methods:
            delattr(obj, name)
    network = s["input"] + s["backbone"] + s["pixel_decoder"] + s["decoder"]
    return {
        "backbone": s["backbone"], "pixel_decoder_rest": s["pixel_decoder"] - s["msda"], "msda": s["msda"],
        "decoder_rest": s["decoder"] - s["mask_pred"], "mask_pred": s["mask_pred"], "input": s["input"],
        "network": network, "tracking": total - network, "total": total,
    }  # fmt: skip


def stages(args: argparse.Namespace) -> None:
    if args.device != "cpu":
        raise SystemExit("profile_model.py stages: CPU only (timers without device synchronisation)")
    torch.set_num_threads(args.threads)
    config, (height, width) = harness.config_and_size(args.config, args)
    model = harness.build(config, "cpu", ["MODEL.MASK_FORMER.TEST.PRECISION", args.precision, *args.opts])
    frames = list(harness.synthetic_frames(args.frames, height, width))
    video = [{"image": frames, "height": height, "width": width}]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.precision]
    divisor = model.size_divisibility
    padded = (-(-height // divisor) * divisor, -(-width // divisor) * divisor)
    pixel_decoder = model.sem_seg_head.pixel_decoder
    linear = pixel_decoder.transformer.encoder.layers[0].linear1
    positions = sum(pixels(padded, s) for s in pixel_decoder.transformer_feature_strides)
    ffn = (positions, linear.in_features, linear.out_features)  # the network's largest GEMM
    gemm_before, ffn_rate = gemm_gflops(dtype), gemm_gflops(torch.float32, *ffn)
    with torch.no_grad():
        flops = gflop_per_frame(model, padded)
        model(video)  # warm-up
    runs = [profile_once(model, video) for _ in range(args.repeats)]
    rate = max(gemm_before, gemm_gflops(dtype))  # the VM's rate swings: the higher is the reference
    per_frame = {key: median(run[key] for run in runs) / args.frames for key in runs[0]}
    print(f"{harness.machine_line()}\n{config.name}, {args.frames} frames {height}x{width}, "
          f"{args.precision}, median of {args.repeats}; GEMM {GEMM}^3 {args.precision} {rate:.0f} GFLOP/s "
          f"(before the runs {gemm_before:.0f}); the encoder FFN's {ffn[0]}x{ffn[1]} @ {ffn[1]}x{ffn[2]}: "
          f"fp32 {ffn_rate:.0f} GFLOP/s\n")  # fmt: skip
    rows = []
    for label, key in ROWS.items():
        seconds, gflop = per_frame[key], flops.get(key)
        rate_cells = [f"{gflop / seconds:.0f}", f"{100 * gflop / seconds / rate:.0f}%"] if gflop else ["", ""]
        gflop_cell = "" if gflop is None else f"{gflop:.1f}"
        share = f"{100 * seconds / per_frame['total']:.0f}%"
        rows.append([label, gflop_cell, f"{1e3 * seconds:.0f}", share, *rate_cells])
    print(harness.table(["part", "GFLOP/frame", "ms/frame", "share", "GFLOP/s", "% of GEMM"], rows))


def msda_inputs(batch: int, device: str) -> tuple[torch.Tensor, ...]:
    """``value, spatial_shapes, level_start_index, reference_points, sampling_offsets,
    attention_logits`` of the encoder's call."""
    shapes = torch.tensor([(MSDA_SIZE[0] // s, MSDA_SIZE[1] // s) for s in MSDA_STRIDES], device=device)
    starts = torch.cat((shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]))
    queries, levels = int(shapes.prod(1).sum()), len(MSDA_STRIDES)
    random = functools.partial(torch.randn, device=device, generator=torch.Generator(device).manual_seed(0))
    centres = []  # each query's own position, (x, y) in [0, 1]
    for height, width in shapes.tolist():
        rows, columns = (torch.arange(height) + 0.5) / height, (torch.arange(width) + 0.5) / width
        ys, xs = torch.meshgrid(rows, columns, indexing="ij")
        centres.append(torch.stack([xs.flatten(), ys.flatten()], -1))
    spread = 2.0 / shapes[0].flip(0)  # about 2 pixels of the finest level
    offsets = spread * random(batch, queries, MSDA_HEADS, levels, MSDA_POINTS, 2)
    logits = random(batch, queries, MSDA_HEADS, levels, MSDA_POINTS)
    references = torch.cat(centres).to(device)[None, :, None].expand(batch, queries, levels, 2)
    value = random(batch, queries, MSDA_HEADS, MSDA_CHANNELS // MSDA_HEADS)
    return value, shapes, starts, references, offsets, logits


def package_from_offsets(
    value: torch.Tensor, shapes: torch.Tensor, starts: torch.Tensor, references: torch.Tensor,
    offsets: torch.Tensor, logits: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """The package's kernel after locations and softmax in PyTorch: ``ms_deform_attn_from_offsets``
    without this project's kernel."""
    locations = references[:, :, None, :, None, :] + offsets  # [N, Q, M, L, P, 2]
    weights = op._softmax_last(logits.flatten(-2)).view_as(logits)  # over levels x points
    return op._msda_compiled(value, shapes, starts, locations, weights)


def msda_call(impl: str | Callable, inputs: tuple[torch.Tensor, ...], args: argparse.Namespace) -> list:
    """Median forward and forward + backward ms of ``impl``, and its output and gradients
    (of value, offsets and logits; the encoder's reference points need none)."""
    value, shapes, starts, references, offsets, logits = inputs
    attend = impl if callable(impl) else functools.partial(op.ms_deform_attn_from_offsets, impl=impl)
    leaves = [t.clone().requires_grad_(True) for t in (value, offsets, logits)]

    def forward() -> torch.Tensor:
        return attend(leaves[0], shapes, starts, references, leaves[1], leaves[2])

    def forward_backward() -> None:
        for leaf in leaves:
            leaf.grad = None
        forward().square().sum().backward()

    with torch.no_grad():
        forward_ms = 1e3 * median(harness.alternate({"": forward}, args.repeats, args.device)[""])
        output = forward()
    both_ms = 1e3 * median(harness.alternate({"": forward_backward}, args.repeats, args.device)[""])
    return [forward_ms, both_ms, [output, *(leaf.grad for leaf in leaves)]]


def msda(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    impls = {"cpu kernel": "compiled"} if args.device == "cpu" and op.cpu_kernel_available() else {}
    if op.compiled_available(args.device):
        impls[f"torch-ms-deform-attn {metadata.version('torch-ms-deform-attn')}"] = package_from_offsets
    impls["pytorch"] = "pytorch"
    rows = []
    for batch in args.batch_sizes:
        inputs = msda_inputs(batch, args.device)
        results = {name: msda_call(impl, inputs, args) for name, impl in impls.items()}
        for name, (forward, both, values) in results.items():
            reference = results["pytorch"][2]
            errors = [((a - b).abs().max() / b.abs().max()).item() for a, b in zip(values, reference)]
            rows.append([name, batch, f"{forward:.1f}", f"{both:.1f}", f"{max(errors):.1e}"])
    print(f"{harness.machine_line(args.device)}\n")
    header = ["implementation", "batch", "forward (ms)", "forward + backward (ms)", "max rel. error"]
    print(harness.table(header, rows))


def main() -> None:
    parser = harness.make_parser(__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("stages", help="per-stage profile against the GEMM rate (CPU)")
    harness.add_common(command, frames=4, repeats=3)
    command.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    command.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    command = commands.add_parser("msda", help="deformable attention: the kernels against the fallback")
    command.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    command.add_argument("--repeats", type=int, default=5)
    command.add_argument("--device", default="cpu")
    command.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    {"stages": stages, "msda": msda}[args.command](args)


if __name__ == "__main__":
    main()
