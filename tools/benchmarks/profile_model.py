#!/usr/bin/env python
"""Where the time of one video goes: a per-module profile against the machine's GEMM rate.

    python tools/benchmarks/profile_model.py [--config CFG] [--frames 8] [--height 360]
        [--width 640] [--threads 2] [--dtype fp32|bf16] [--repeat 3] [OPTS ...]

Builds the model of ``--config`` with random weights (seed 0), runs one synthetic video of
``--frames`` frames through the default call ``model([{"image": frames, ...}])`` ``--repeat``
times and times each part with wrappers around the modules' methods: backbone, pixel
decoder (its MSDeformAttn layers separately), transformer decoder (its per-layer mask
predictions separately), tracking (adding frames to the video result) and post-processing
(the video-level result). FLOPs per frame come from fvcore on one padded frame; what fvcore
cannot see (the deformable sampling, the mask-prediction einsum inside the decoder) is
counted by hand. The fp32 and bf16 GEMM rates are measured in the same run with
``torch.matmul`` of large square matrices, before and after the timed runs (the higher
is the reference), and the fp32 rate of the encoder FFN's own matmul shape beside them. ``--dtype bf16`` sets
``MODEL.MASK_FORMER.TEST.PRECISION bf16``; trailing ``OPTS`` are config overrides.
Prints a markdown table (median seconds per frame over the repeats).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from detectron2.modeling import build_model

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # this checkout's packages, not an installed copy
from machine_info import cpu_name  # noqa: E402

from mask2former.modeling.pixel_decoder.ms_deform_attn import MSDeformAttn  # noqa: E402
from minvis.config import build_config  # noqa: E402
from minvis.inference import VideoResult, VideoResultAccumulator  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "youtubevis_2019" / "video_maskformer2_R50_bs32_8ep_frame.yaml"
GEMM_SIZE = 4096
GEMM_REPEATS = 5
# Rows of the table: (label, timer key); "network" rows are compared with the GEMM rate.
ROWS = (
    ("backbone", "backbone"),
    ("pixel decoder (excl. MSDeformAttn)", "pixel_decoder_rest"),
    ("MSDeformAttn (6 layers)", "msda"),
    ("transformer decoder (excl. mask prediction)", "decoder_rest"),
    ("mask embedding + mask prediction (10x)", "mask_pred"),
    ("input normalisation / padding / other", "other"),
    ("**network total**", "network"),
    ("tracking (add_frame)", "tracking"),
    ("post-processing (top-k, dense masks)", "postprocess"),
    ("**whole call**", "total"),
)


class Timers:
    """Accumulated wall time per key; nested keys are subtracted when the table is built."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, fn: Callable, key: str) -> Callable:
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - start

        return timed


def gemm_gflops(dtype: torch.dtype, m: int = GEMM_SIZE, k: int = GEMM_SIZE, n: int = GEMM_SIZE) -> float:
    """Achieved GFLOP/s of an [m, k] x [k, n] matmul (best of a few)."""
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(GEMM_REPEATS):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def instrument(model: torch.nn.Module, timers: Timers) -> Callable[[], None]:
    """Wrap the timed methods; returns a function that removes the wrappers."""
    head = model.sem_seg_head
    instance_patches = [
        (model.backbone, "forward", "backbone"),
        (head.pixel_decoder, "forward_features", "pixel_decoder"),
        (head.predictor, "forward", "decoder"),
        (head.predictor, "_predict", "mask_pred"),
    ]
    instance_patches += [(m, "forward", "msda") for m in model.modules() if isinstance(m, MSDeformAttn)]
    for obj, name, key in instance_patches:
        setattr(obj, name, timers.wrap(getattr(obj, name), key))
    class_patches = [
        (VideoResultAccumulator, "add_frame", "tracking"),
        (VideoResultAccumulator, "finalize", "postprocess"),
        (VideoResult, "instance_masks", "postprocess"),
    ]
    originals = [(cls, name, getattr(cls, name)) for cls, name, _ in class_patches]
    for cls, name, key in class_patches:
        setattr(cls, name, timers.wrap(getattr(cls, name), key))

    def restore() -> None:
        for obj, name, _ in instance_patches:
            delattr(obj, name)
        for cls, name, fn in originals:
            setattr(cls, name, fn)

    return restore


def flops_per_frame(model: torch.nn.Module, height: int, width: int) -> dict[str, float]:
    """GFLOP (2 x multiply-accumulates) per frame of each row, fvcore plus hand counts."""
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import addmm_flop_jit

    divisor = model.size_divisibility
    padded = (-(-height // divisor) * divisor, -(-width // divisor) * divisor)
    image = torch.zeros(1, 3, *padded)
    head = model.sem_seg_head
    with torch.no_grad():
        features = model.backbone(image)
        backbone = FlopCountAnalysis(model.backbone, image)
        head_count = FlopCountAnalysis(head, (features,))
        for count in (backbone, head_count):
            count.set_op_handle("aten::addmm_", addmm_flop_jit)  # MSDeformAttn's sampling offsets
            count.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            count.tracer_warnings("none")
        by_module = head_count.by_module()
    msda_modules = [name for name, m in head.named_modules() if isinstance(m, MSDeformAttn)]
    msda_linear = sum(by_module.get(name, 0) for name in msda_modules)
    # Deformable sampling (not traced): per query, head, level and point, 4 bilinear taps
    # and one weight over head_dim channels; every encoder position is a query.
    pixel_decoder = head.pixel_decoder
    strides = pixel_decoder.transformer_feature_strides
    queries = sum((padded[0] // s) * (padded[1] // s) for s in strides)
    attn = pixel_decoder.transformer.encoder.layers[0].self_attn
    sampling = queries * attn.n_heads * attn.n_levels * attn.n_points * (attn.d_model // attn.n_heads) * 5
    msda = msda_linear + sampling * len(msda_modules)
    # Mask prediction, once for the learnable queries + once per layer: class head and
    # 3-layer mask MLP on the queries, then the product with the mask features, at
    # [H/4, W/4] for the last prediction; in inference the earlier ones only make the next
    # layer's attention mask, at that layer's feature size (coarsest level first, round-robin).
    predictor = head.predictor
    q, c = predictor.num_queries, predictor.mask_embed.layers[-1].out_features
    hw = (padded[0] // pixel_decoder.common_stride) * (padded[1] // pixel_decoder.common_stride)
    level_pixels = [(padded[0] // s) * (padded[1] // s) for s in sorted(strides, reverse=True)]
    mlp = sum(layer.in_features * layer.out_features for layer in predictor.mask_embed.layers)
    per_step = q * (predictor.class_embed.in_features * predictor.class_embed.out_features + mlp)
    products = q * c * (hw + sum(level_pixels[k % len(level_pixels)] for k in range(predictor.num_layers)))
    mask_pred = per_step * (predictor.num_layers + 1) + products
    decoder_traced = by_module.get("predictor", 0)
    pixel_traced = by_module.get("pixel_decoder", 0)
    macs = {
        "backbone": backbone.total(),
        "pixel_decoder_rest": pixel_traced - msda_linear,
        "msda": msda,
        # fvcore sees the decoder's einsum but not always its MLP calls: take the larger.
        "decoder_rest": max(decoder_traced - mask_pred, 0),
        "mask_pred": mask_pred,
        "other": 0,
    }
    macs["network"] = sum(macs.values())
    return {key: 2 * value / 1e9 for key, value in macs.items()}


def profile(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    overrides = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", *args.opts]
    if args.dtype == "bf16":
        overrides += ["MODEL.MASK_FORMER.TEST.PRECISION", "bf16"]
    cfg = build_config(str(args.config), overrides)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    frames = [
        torch.randint(0, 256, (3, args.height, args.width), generator=gen, dtype=torch.uint8).float()
        for _ in range(args.frames)
    ]
    video = [{"image": frames, "height": args.height, "width": args.width}]

    gemm = {"fp32": gemm_gflops(torch.float32), "bf16": gemm_gflops(torch.bfloat16)}
    # The network's largest GEMM: the first FFN matmul of an encoder layer, every position
    # of the three encoder levels (stride 8, 16, 32) x d_model -> dim_feedforward.
    encoder_layer = model.sem_seg_head.pixel_decoder.transformer.encoder.layers[0]
    divisor = model.size_divisibility
    padded = (-(-args.height // divisor) * divisor, -(-args.width // divisor) * divisor)
    strides = model.sem_seg_head.pixel_decoder.transformer_feature_strides
    positions = sum((padded[0] // s) * (padded[1] // s) for s in strides)
    ffn_shape = (positions, encoder_layer.linear1.in_features, encoder_layer.linear1.out_features)
    ffn_gemm = gemm_gflops(torch.float32, *ffn_shape)
    flops = flops_per_frame(model, args.height, args.width)

    per_run: dict[str, list[float]] = defaultdict(list)
    with torch.no_grad():
        model(video)  # warm-up (allocator, kernel selection)
        for _ in range(args.repeat):
            timers = Timers()
            restore = instrument(model, timers)
            start = time.perf_counter()
            try:
                model(video)
            finally:
                restore()
            total = time.perf_counter() - start
            s = timers.seconds
            split = {
                "backbone": s["backbone"],
                "pixel_decoder_rest": s["pixel_decoder"] - s["msda"],
                "msda": s["msda"],
                "decoder_rest": s["decoder"] - s["mask_pred"],
                "mask_pred": s["mask_pred"],
                "tracking": s["tracking"],
                "postprocess": s["postprocess"],
                "total": total,
            }
            split["network"] = s["backbone"] + s["pixel_decoder"] + s["decoder"]
            split["other"] = total - split["network"] - s["tracking"] - s["postprocess"]
            split["network"] += split["other"]
            for key, value in split.items():
                per_run[key].append(value / args.frames)

    # The VM's GEMM rate swings (158 to 323 GFLOP/s within a day): measured again after the
    # timed runs, the higher of the two is the reference (the conservative choice).
    gemm_before = gemm
    gemm = {"fp32": gemm_gflops(torch.float32), "bf16": gemm_gflops(torch.bfloat16)}
    gemm = {key: max(gemm[key], gemm_before[key]) for key in gemm}
    rate = gemm[args.dtype]
    print(
        f"\nmodel {Path(args.config).name}, {args.frames} frames {args.height}x{args.width}, "
        f"{args.threads} threads, {args.dtype}, median of {args.repeat}; {cpu_name()}; "
        f"torch {torch.__version__}"
    )
    print(
        f"GEMM ({GEMM_SIZE}^3 matmul, the higher of before and after the timed runs): "
        f"fp32 {gemm['fp32']:.0f} GFLOP/s (before {gemm_before['fp32']:.0f}), "
        f"bf16 {gemm['bf16']:.0f} GFLOP/s (before {gemm_before['bf16']:.0f}); "
        f"the % column is against {args.dtype}"
    )
    print(
        f"GEMM of the encoder FFN's shape ({ffn_shape[0]}x{ffn_shape[1]} @ {ffn_shape[1]}x{ffn_shape[2]}), "
        f"fp32: {ffn_gemm:.0f} GFLOP/s = {100 * ffn_gemm / gemm['fp32']:.0f}% of the {GEMM_SIZE}^3 rate\n"
    )
    print("| part | GFLOP/frame | ms/frame | share | GFLOP/s | % of GEMM |")
    print("|---|---:|---:|---:|---:|---:|")
    total = statistics.median(per_run["total"])
    for label, key in ROWS:
        seconds = statistics.median(per_run[key])
        gflop = flops.get(key)
        achieved = f"{gflop / seconds:.0f}" if gflop and seconds > 0 else ""
        percent = f"{100 * gflop / seconds / rate:.0f}%" if gflop and seconds > 0 else ""
        gflop_text = f"{gflop:.1f}" if gflop is not None else ""
        print(
            f"| {label} | {gflop_text} | {1000 * seconds:.0f} | {100 * seconds / total:.0f}% "
            f"| {achieved} | {percent} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    if not args.config.is_file():
        parser.exit(2, f"error: config file {args.config} does not exist\n")
    if min(args.frames, args.height, args.width, args.threads, args.repeat) < 1:
        parser.exit(2, "error: --frames, --height, --width, --threads and --repeat must be >= 1\n")
    profile(args)


if __name__ == "__main__":
    main()
