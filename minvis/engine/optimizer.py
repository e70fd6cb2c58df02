"""Mask2Former's optimizer: AdamW/SGD with per-parameter groups and full-model gradient clipping."""

import copy
import itertools
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.solver.build import maybe_add_gradient_clipping
from torch import nn

NORM_MODULE_TYPES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
# Parameters without weight decay whatever module holds them (Swin's position tables).
NO_DECAY_PARAM_NAMES = ("relative_position_bias_table", "absolute_pos_embed")


def param_groups(cfg: CfgNode, model: nn.Module) -> list[dict[str, Any]]:
    """One group per parameter: backbone LR multiplier, no decay on norms/embeddings as configured."""
    solver = cfg.SOLVER
    defaults = {"lr": solver.BASE_LR, "weight_decay": solver.WEIGHT_DECAY}
    groups, seen = [], set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            hyper = copy.copy(defaults)
            if "backbone" in module_name:
                hyper["lr"] *= solver.BACKBONE_MULTIPLIER
            if param_name in NO_DECAY_PARAM_NAMES:
                hyper["weight_decay"] = 0.0
            if isinstance(module, NORM_MODULE_TYPES):
                hyper["weight_decay"] = solver.WEIGHT_DECAY_NORM
            if isinstance(module, nn.Embedding):
                hyper["weight_decay"] = solver.WEIGHT_DECAY_EMBED
            groups.append({"params": [param], **hyper})
    return groups


def _with_full_model_clipping(optimizer_cls: type, max_norm: float, norm_type: float) -> type:
    """A subclass of ``optimizer_cls`` that clips the global gradient norm before each step."""

    class FullModelGradientClippingOptimizer(optimizer_cls):
        def step(self, closure=None):
            params = itertools.chain(*[group["params"] for group in self.param_groups])
            torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
            return super().step(closure=closure)

    return FullModelGradientClippingOptimizer


def build_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    solver = cfg.SOLVER
    clip = solver.CLIP_GRADIENTS
    full_model_clip = clip.ENABLED and clip.CLIP_TYPE == "full_model" and clip.CLIP_VALUE > 0.0
    if solver.OPTIMIZER == "SGD":
        cls, kwargs = torch.optim.SGD, {"momentum": solver.MOMENTUM}
    elif solver.OPTIMIZER == "ADAMW":
        cls, kwargs = torch.optim.AdamW, {}
    else:
        raise ValueError(f"SOLVER.OPTIMIZER must be ADAMW or SGD, got {solver.OPTIMIZER}")
    if full_model_clip:
        cls = _with_full_model_clipping(cls, clip.CLIP_VALUE, clip.NORM_TYPE)
    optimizer = cls(param_groups(cfg, model), solver.BASE_LR, **kwargs)
    if clip.CLIP_TYPE != "full_model":
        # detectron2's per-parameter "value"/"norm" clipping; full_model with CLIP_VALUE <= 0
        # means no clipping (as officially), which detectron2's helper would reject.
        optimizer = maybe_add_gradient_clipping(cfg, optimizer)
    return optimizer
