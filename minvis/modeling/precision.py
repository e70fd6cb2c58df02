"""The precision setting: which dtype the network runs in, decided in one place.

``MODEL.MASK_FORMER.TEST.PRECISION`` is ``fp32``, ``fp16`` or ``bf16`` (the network
under ``torch.autocast`` with that dtype), or ``auto``, the official behaviour:
``fp16`` on CUDA when ``TEST.AMP.ENABLED`` (the official evaluation's autocast), ``fp32``
otherwise. Training follows ``SOLVER.AMP.ENABLED``: float16 on CUDA through detectron2's
AMP trainer (with gradient scaling, as the official release), bfloat16 on the CPU (no
scaling needed) (:func:`resolve_training_precision`). :func:`resolve_precision` reads
the inference key; the model enters the one autocast context
and keeps its declared float32 islands (``VideoMaskFormer_frame.float32_islands``) in
float32 with :func:`float32_islands`. Tracking and the video-level scores always run on
float32 outputs.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from detectron2.config import CfgNode
from torch import Tensor, nn

AUTOCAST_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(cfg: CfgNode) -> str:
    """``fp32``, ``fp16`` or ``bf16`` for ``cfg`` (see the module docstring)."""
    precision = cfg.MODEL.MASK_FORMER.TEST.PRECISION
    if precision == "auto":
        return "fp16" if cfg.TEST.AMP.ENABLED and cfg.MODEL.DEVICE.startswith("cuda") else "fp32"
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(
            f"MODEL.MASK_FORMER.TEST.PRECISION must be auto, {', '.join(AUTOCAST_DTYPES)}; got {precision!r}"
        )
    return precision


def resolve_training_precision(cfg: CfgNode) -> str:
    """``bf16`` when ``SOLVER.AMP.ENABLED`` on the CPU (the model's own autocast); ``fp32``
    otherwise (on CUDA the AMP trainer's float16 autocast is in force around the model)."""
    return "bf16" if cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE == "cpu" else "fp32"


def float32(device_type: str) -> AbstractContextManager:
    """Autocast off: what runs inside computes in the dtype of its inputs."""
    return torch.autocast(device_type, enabled=False)


def to_float32(x: Any) -> Any:
    """Floating tensors in ``x`` (nested lists, tuples, dicts) as float32."""
    if isinstance(x, Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, list | tuple):
        return type(x)(to_float32(v) for v in x)
    if isinstance(x, dict):
        return {k: to_float32(v) for k, v in x.items()}
    return x


@contextmanager
def float32_islands(modules: list[nn.Module]) -> Iterator[None]:
    """While open, each of ``modules`` runs in float32 under any autocast: its floating
    inputs are cast to float32 and autocast is off inside its ``forward``."""
    handles = []
    for module in modules:
        contexts: list[AbstractContextManager] = []

        def enter(module: nn.Module, args: tuple, kwargs: dict, contexts: list = contexts) -> tuple:
            contexts.append(float32(next(module.parameters()).device.type))
            contexts[-1].__enter__()
            return to_float32(args), to_float32(kwargs)

        def leave(module: nn.Module, args: tuple, output: Any, contexts: list = contexts) -> None:
            contexts.pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(enter, with_kwargs=True))
        handles.append(module.register_forward_hook(leave, always_call=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
