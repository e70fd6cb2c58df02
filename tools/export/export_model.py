#!/usr/bin/env python
"""Export MinVIS's per-frame image model to ONNX and check it.

    python tools/export/export_model.py --config-file CFG --output DIR [--overwrite] [--opts KEY VALUE ...]

Writes ``DIR/model.onnx``, the backbone, pixel decoder and decoder (one normalised image,
zero-padded to the size divisibility, ``images [1, 3, H, W]`` with H and W any multiples of it
-> ``pred_logits``, ``pred_masks``, ``pred_embds``; the preprocessing is recorded in its
metadata), and ``DIR/config.yaml``, the frozen config whose ``MODEL.WEIGHTS`` is that file: the
predictor, the demo and ``train_net.py --eval-only`` then run it in ONNX Runtime
(:mod:`minvis.modeling.exported`). The graph is traced by ``torch.export`` (non-strict, H and W
symbolic), deformable attention through ``grid_sample``. Before the files take their final names
they are checked: ``onnx.checker``, then ONNX Runtime against PyTorch on a landscape and a portrait
probe frame. Errors are one line, exit status 2.
"""

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from unittest import mock

import onnx
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from torch import Tensor, nn

from mask2former.modeling.pixel_decoder.ms_deform_attn_op import IMPL_ENV_VAR
from minvis.config import build_config
from minvis.modeling import CheckpointLoadError, MinVISCheckpointer, VideoMaskFormer_frame
from minvis.modeling.exported import INPUT_NAME, OUTPUT_NAMES, PREPROCESSING_KEY, is_exported, load_session
from minvis.output_paths import OutputPathError, StagedOutputs, check_outputs, lock_output_dir

MODEL_NAME, CONFIG_NAME = "model.onnx", "config.yaml"
PROBE_ASPECT = 16 / 9  # probe frames: a 16:9 video frame at the test size, and the same upright
PROBE_TOLERANCE = 1e-3  # max |ONNX Runtime - PyTorch| of each output over its largest magnitude
MIN_SIZE_STEPS = 2  # torch.export specialises sizes 0 and 1: H, W >= 2 x the size divisibility
BAD_INPUT = 2


class ExportError(Exception):
    """An export that cannot be made or fails its check (one-line message)."""


class ImageNetwork(nn.Module):
    """What is exported: the video model's backbone and head, images -> the tuple of :data:`OUTPUT_NAMES`."""

    def __init__(self, model: VideoMaskFormer_frame) -> None:
        super().__init__()
        self.backbone, self.head = model.backbone, model.sem_seg_head

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs = self.head(self.backbone(images))
        return tuple(outputs[name] for name in OUTPUT_NAMES)


def load_model(cfg: CfgNode) -> VideoMaskFormer_frame:
    """The float32 model of ``cfg`` on the CPU with ``MODEL.WEIGHTS`` (strict), in eval mode."""
    weights = cfg.MODEL.WEIGHTS
    if is_exported(weights):
        raise ExportError(f"MODEL.WEIGHTS {weights} is an exported model already; pass a checkpoint")
    model = build_model(cfg).eval()
    if weights:
        MinVISCheckpointer(model, strict=True).load(weights)
    else:
        warnings.warn("MODEL.WEIGHTS is empty: exporting random weights", RuntimeWarning, stacklevel=2)
    return model


def probe_images(model: VideoMaskFormer_frame, cfg: CfgNode) -> list[Tensor]:
    """Two random frames at the test size, landscape and portrait, preprocessed as the model's own
    input: normalised, zero-padded ``[1, 3, H, W]``."""
    generator = torch.Generator().manual_seed(0)
    short = cfg.INPUT.MIN_SIZE_TEST
    sizes = [(short, round(short * PROBE_ASPECT)), (round(short * PROBE_ASPECT), short)]
    frames = [torch.randint(0, 256, (3, *size), generator=generator, dtype=torch.uint8) for size in sizes]
    return [model._to_image_list([frame.float()]).tensor.contiguous() for frame in frames]


def export(model: VideoMaskFormer_frame, example: Tensor, path: Path, metadata: dict) -> None:
    """Trace the image model on ``example`` with symbolic H and W and write it to ``path``."""
    step = max(model.size_divisibility, 1)
    height, width = (torch.export.Dim(name, min=MIN_SIZE_STEPS) for name in ("height_steps", "width_steps"))
    dynamic = {"images": {2: step * height, 3: step * width}}
    # grid_sample, which ONNX Runtime runs: the compiled deformable-attention kernels are opaque ops.
    with mock.patch.dict(os.environ, {IMPL_ENV_VAR: "pytorch"}), torch.no_grad():
        # Non-strict tracing, called here: torch.onnx.export would fall back to strict tracing,
        # which bakes the probe's sizes into the graph.
        program = torch.export.export(ImageNetwork(model), (example,), dynamic_shapes=dynamic, strict=False)
        # The ONNX optimizer would fold sizes read from tensors into constants: ONNX Runtime
        # optimises the graph when it loads it instead.
        onnx_program = torch.onnx.export(
            program, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), external_data=False,
            optimize=False, verbose=False,
        )  # fmt: skip
    onnx_program.model.metadata_props[PREPROCESSING_KEY] = json.dumps(metadata)
    onnx_program.save(path)


def check(path: Path, final: Path, cfg: CfgNode, model: VideoMaskFormer_frame, probes: list[Tensor]) -> float:
    """``onnx.checker``, then the largest relative deviation of ONNX Runtime's outputs from
    PyTorch's on ``probes``; raises :class:`ExportError` above :data:`PROBE_TOLERANCE`."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"{final}: onnx.checker rejects it ({str(error).splitlines()[0]})") from None
    session, worst = load_session(str(path), cfg), 0.0
    for images in probes:
        ours = session.run(OUTPUT_NAMES, {INPUT_NAME: images.numpy()})
        with torch.no_grad():
            reference = model._network(images)
        for name, value in zip(OUTPUT_NAMES, ours):
            expected = reference[name].float()
            error = (torch.from_numpy(value) - expected).abs().max().item()
            scale = expected.abs().max().item()
            if error > PROBE_TOLERANCE * scale:
                raise ExportError(
                    f"{final}: ONNX Runtime's {name} deviates from PyTorch's by {error:.2e} (largest value "
                    f"{scale:.2e}) on a {tuple(images.shape[-2:])} probe; tolerance {PROBE_TOLERANCE:g} of it"
                )
            worst = max(worst, error / scale if scale else 0.0)
    return worst


def frozen_config(cfg: CfgNode, model_path: Path, size_divisibility: int) -> str:
    """``cfg`` as the exported model runs it: its weights, the CPU, float32, the resolved divisibility."""
    frozen = cfg.clone()
    frozen.MODEL.WEIGHTS = str(model_path.resolve())
    frozen.MODEL.DEVICE = "cpu"
    frozen.MODEL.MASK_FORMER.SIZE_DIVISIBILITY = size_divisibility
    frozen.MODEL.MASK_FORMER.TEST.PRECISION = "fp32"
    return frozen.dump()


def preprocessing(cfg: CfgNode, size_divisibility: int) -> dict:
    """What the input needs (:mod:`minvis.data.preprocess` and the model's normalisation and padding)."""
    return {
        "format": cfg.INPUT.FORMAT,
        "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
        "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
        "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
        "pixel_std": list(cfg.MODEL.PIXEL_STD),
        "size_divisibility": size_divisibility,
        "padding": "zeros after normalisation, bottom and right",
    }


def run(args: argparse.Namespace) -> None:
    try:
        cfg = build_config(args.config_file, [*args.opts, "MODEL.DEVICE", "cpu"])
    except (AssertionError, KeyError, ValueError, OSError) as error:  # yacs' and YAML's errors
        raise ExportError(f"config {args.config_file} (with --opts {args.opts}): {error}") from None
    output = Path(args.output)
    finals = [output / MODEL_NAME, output / CONFIG_NAME]
    inputs = [args.config_file] + ([cfg.MODEL.WEIGHTS] if cfg.MODEL.WEIGHTS else [])
    check_outputs(finals, inputs, overwrite=args.overwrite)
    model = load_model(cfg)
    probes = probe_images(model, cfg)
    output.mkdir(parents=True, exist_ok=True)
    with lock_output_dir(output):
        existing = check_outputs(finals, inputs, overwrite=args.overwrite)  # no other run writes here now
        with StagedOutputs(finals, replaces=existing) as staged:
            divisibility = model.size_divisibility
            export(model, probes[0], staged.path(finals[0]), preprocessing(cfg, divisibility))
            deviation = check(staged.path(finals[0]), finals[0], cfg, model, probes)
            staged.path(finals[1]).write_text(frozen_config(cfg, finals[0], divisibility))
    megabytes = finals[0].stat().st_size / 2**20
    sizes = " and ".join(f"{p.shape[-2]}x{p.shape[-1]}" for p in probes)
    print(
        f"exported {finals[0]} ({megabytes:.1f} MB) and {finals[1]}; onnx.checker passed; ONNX Runtime vs "
        f"PyTorch on {sizes} probes: max deviation {deviation:.1e} of each output's range"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="the model's config (YAML)")
    parser.add_argument("--output", required=True, help="folder for model.onnx and config.yaml")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --output")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    try:
        run(args)
    except (ExportError, CheckpointLoadError, OutputPathError, OSError) as error:
        print(f"export_model.py: error: {error}", file=sys.stderr)
        return BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
