"""Multi-scale deformable attention sampling: compiled kernels or pure-PyTorch fallback.

Two compiled kernels: this project's CPU kernel (``csrc/ms_deform_attn_cpu.cpp``, built by
``pip install``: float32, vectorised, 3-4x faster than the package's CPU kernel; forward and
backward for :func:`ms_deform_attn_from_offsets`, the layer's call, forward only for
:func:`ms_deform_attn`) and the PyPI package ``torch-ms-deform-attn`` (CPU, CUDA and MPS,
with gradients). The fallback samples every level with ``F.grid_sample`` (bilinear, zero
padding, ``align_corners=False``), which is what the kernels compute. The environment
variable ``MINVIS_MSDA_IMPL`` chooses:

- ``auto`` (default): a compiled kernel when one is installed and supports the call,
  otherwise the fallback;
- ``compiled``: a compiled kernel, failing loudly if none can be used;
- ``pytorch``: the fallback.

"A compiled kernel" is this project's CPU kernel for float32 CPU calls (of :func:`ms_deform_attn`
only those that need no gradient), the package's kernel for everything else it supports. The
``impl`` argument of :func:`ms_deform_attn` overrides the environment variable.
"""

import logging
import os

import torch
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx

logger = logging.getLogger(__name__)

IMPL_ENV_VAR = "MINVIS_MSDA_IMPL"
IMPLEMENTATIONS = ("auto", "compiled", "pytorch")

try:
    from torch_ms_deform_attn import _C as _msda_native
    from torch_ms_deform_attn import ms_deform_attn as _msda_compiled
except (ImportError, OSError) as exc:  # not installed, or built against another torch
    _msda_compiled = None
    COMPILED_DEVICE_TYPES: frozenset[str] = frozenset()
    logger.info("torch-ms-deform-attn unavailable (%s); using the grid_sample fallback", exc)
else:
    COMPILED_DEVICE_TYPES = frozenset(
        ["cpu"] + (["cuda"] if _msda_native.with_cuda else []) + (["mps"] if _msda_native.with_mps else [])
    )

try:
    from . import _ms_deform_attn_cpu  # noqa: F401 - registers torch.ops.minvis.ms_deform_attn_cpu
except (ImportError, OSError) as exc:  # not built (no compiler), or built against another torch
    _cpu_kernel = None
    logger.info("CPU deformable-attention kernel unavailable (%s)", exc)
else:
    _cpu_kernel = torch.ops.minvis.ms_deform_attn_cpu

# Floating dtypes the package's kernel accepts (half precision is computed in float32 by it).
_COMPILED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def compiled_available(device: torch.device | str = "cpu") -> bool:
    """Whether the package's kernel (the one with gradients) is importable for ``device``."""
    return torch.device(device).type in COMPILED_DEVICE_TYPES


def cpu_kernel_available() -> bool:
    """Whether this project's CPU inference kernel was built and loads."""
    return _cpu_kernel is not None


def _cpu_kernel_applies(*tensors: torch.Tensor, differentiable: bool = False) -> bool:
    """The CPU kernel computes float32 CPU calls (``tensors``: its inputs), those that need
    gradients only where it has a backward pass (``differentiable``: the from-offsets op)."""
    if _cpu_kernel is None:
        return False
    if not differentiable and torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def ms_deform_attn_pytorch(
    value: torch.Tensor, spatial_shapes: torch.Tensor, sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """Deformable attention with ``grid_sample``; same arguments as :func:`ms_deform_attn`."""
    batch, _, heads, head_dim = value.shape  # [N, S, M, D]
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape  # [N, Q, M, L, P, 2]
    shapes: list[tuple[int, int]] = [(h, w) for h, w in spatial_shapes.tolist()]
    # grid_sample wants coordinates in [-1, 1]; heads are folded into the batch.
    grids = (2 * sampling_locations - 1).transpose(1, 2).flatten(0, 1)  # [N*M, Q, L, P, 2]
    per_level_values = value.split([h * w for h, w in shapes], dim=1)  # L x [N, H*W, M, D]

    sampled = []
    for level, ((height, width), level_value) in enumerate(zip(shapes, per_level_values)):
        # [N, H*W, M, D] -> [N, M, D, H*W] -> [N*M, D, H, W]
        level_value = level_value.permute(0, 2, 3, 1).reshape(batch * heads, head_dim, height, width)
        level_grid = grids[:, :, level]  # [N*M, Q, P, 2]
        sampled.append(  # [N*M, D, Q, P]
            F.grid_sample(level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    samples = torch.stack(sampled, dim=-2).flatten(-2)  # [N*M, D, Q, L*P]
    # [N, Q, M, L, P] -> [N, M, Q, L, P] -> [N*M, 1, Q, L*P]
    weights = attention_weights.transpose(1, 2)
    weights = weights.reshape(batch * heads, 1, num_queries, num_levels * num_points)
    output = (samples * weights).sum(-1).view(batch, heads * head_dim, num_queries)
    return output.transpose(1, 2).contiguous()  # [N, Q, M*D]


def _resolve_impl(
    impl: str | None, value: torch.Tensor, *sampling: torch.Tensor, differentiable: bool = False
) -> str:
    """``cpu_kernel``, ``package`` or ``pytorch`` for a call on ``value`` and the float
    tensors that say where and how much to sample (``differentiable``: as for
    :func:`_cpu_kernel_applies`)."""
    choice = (impl or os.environ.get(IMPL_ENV_VAR, "auto")).lower()
    if choice not in IMPLEMENTATIONS:
        raise ValueError(f"{IMPL_ENV_VAR}/impl must be one of {IMPLEMENTATIONS}, got {choice!r}")
    if choice == "pytorch":
        return choice
    if _cpu_kernel_applies(value, *sampling, differentiable=differentiable):
        return "cpu_kernel"
    if compiled_available(value.device) and value.dtype in _COMPILED_DTYPES:
        return "package"
    if choice == "compiled":
        raise RuntimeError(
            "compiled multi-scale deformable attention requested but torch-ms-deform-attn "
            f"is not installed or does not support {value.device.type}/{value.dtype}"
        )
    return "pytorch"


def ms_deform_attn(
    value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor, attention_weights: torch.Tensor, im2col_step: int = 64,
    impl: str | None = None,
) -> torch.Tensor:  # fmt: skip
    """Sample each head's value maps at the given locations and sum them with the weights -> [N, Q, M*D].

    value: [N, S, M, D], the flattened levels of M heads of D channels, S = sum(H_l * W_l);
    spatial_shapes: [L, 2] (H_l, W_l); level_start_index: [L], offset of each level in S;
    sampling_locations: [N, Q, M, L, P, 2], (x, y) in [0, 1] over each level's extent;
    attention_weights: [N, Q, M, L, P], used as given (no softmax here); im2col_step: batch chunk
    of the CUDA kernel; impl: ``auto`` / ``compiled`` / ``pytorch``, None reads ``MINVIS_MSDA_IMPL``.
    """
    resolved = _resolve_impl(impl, value, sampling_locations, attention_weights)
    if resolved == "cpu_kernel":
        return _cpu_kernel(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    if resolved == "package":
        args = (value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return _msda_compiled(*args, im2col_step)
    return ms_deform_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights)


def _softmax_last(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension; on CPU about 6x faster than ``F.softmax`` for the
    short (levels x points) rows here, which it does not vectorise."""
    if x.device.type != "cpu":
        return F.softmax(x, -1)
    exp = (x - x.amax(-1, keepdim=True)).exp()
    return exp / exp.sum(-1, keepdim=True)


def ms_deform_attn_from_offsets(
    value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
    reference_points: torch.Tensor, sampling_offsets: torch.Tensor, attention_logits: torch.Tensor,
    im2col_step: int = 64, impl: str | None = None,
) -> torch.Tensor:  # fmt: skip
    """:func:`ms_deform_attn` at locations ``reference_points`` [N, Q, L, 2] + ``sampling_offsets``
    [N, Q, M, L, P, 2] (already divided by each level's (W, H)) with weights softmax(``attention_logits``
    [N, Q, M, L, P]) over each query and head's L x P (this project's CPU kernel does both itself)."""
    tensors = (value, reference_points, sampling_offsets, attention_logits)
    if _resolve_impl(impl, *tensors, differentiable=True) == "cpu_kernel":
        return torch.ops.minvis.ms_deform_attn_cpu_from_offsets(
            value, spatial_shapes, level_start_index, reference_points, sampling_offsets, attention_logits
        )
    locations = reference_points[:, :, None, :, None, :] + sampling_offsets  # [N, Q, M, L, P, 2]
    weights = _softmax_last(attention_logits.flatten(-2)).view_as(attention_logits)  # over levels x points
    return ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights, im2col_step, impl)


def _from_offsets_setup_context(
    ctx: FunctionCtx, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
) -> None:
    ctx.save_for_backward(*inputs)  # all six: the backward recomputes the softmax and the corners


def _from_offsets_backward(ctx: FunctionCtx, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """grad_output [N, Q, M*D] -> gradients of the CPU kernel's inputs: value, reference points,
    offsets and logits (None for the level metadata)."""
    grad_value, grad_offsets, grad_logits = torch.ops.minvis.ms_deform_attn_cpu_from_offsets_backward(
        grad_output, *ctx.saved_tensors
    )
    # Each reference point [N, Q, L, 2] moves all its heads' and points' samples.
    grad_reference = grad_offsets.sum((2, 4)) if ctx.needs_input_grad[3] else None
    return grad_value, None, None, grad_reference, grad_offsets, grad_logits


if _cpu_kernel is not None:
    torch.library.register_autograd(
        "minvis::ms_deform_attn_cpu_from_offsets", _from_offsets_backward,
        setup_context=_from_offsets_setup_context,
    )  # fmt: skip
