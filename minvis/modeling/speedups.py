"""Speed-ups that leave the results unchanged, in one step: :func:`apply_speedups`.

* Channels-last weights: convolutions are faster on channels-last tensors (oneDNN on
  the CPU, cuDNN on the GPU); the model's inputs are channels-last too.
* Each FrozenBatchNorm2d folded into the convolution before it when no gradient is
  needed (inference, and frozen layers in training). A detectron2 ``Conv2d`` whose
  ``norm`` is a ``FrozenBatchNorm2d`` computes ``(conv(x, W) + b - mean) * s + beta``
  with ``s = gamma / sqrt(var + eps)``: one convolution with weight ``W * s`` and bias
  ``(b - mean) * s + beta`` gives the same without another pass over the output (53
  passes over ResNet-50's feature maps per frame). The folded weight and bias are a
  cache, rebuilt when a tensor they come from changes (a loaded checkpoint, ``.to()``).
"""

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import Tensor, nn


class _FoldedForward:
    """The ``forward`` of one ``Conv2d`` + ``FrozenBatchNorm2d``, folded when no gradient is needed."""

    def __init__(self, conv: Conv2d):
        self.conv = conv
        self._sources: tuple | None = None  # identity and version of the tensors folded
        self._weight: Tensor | None = None
        self._bias: Tensor | None = None

    def _source_tensors(self) -> list[Tensor]:
        conv, norm = self.conv, self.conv.norm
        tensors = [conv.weight, norm.weight, norm.bias, norm.running_mean, norm.running_var]
        return tensors + ([conv.bias] if conv.bias is not None else [])

    def _folded(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The folded weight and bias in ``dtype`` (under autocast: its low-precision dtype,
        so that the convolution does not cast the weight again on every call)."""
        sources = tuple((t.data_ptr(), t._version, t.dtype) for t in self._source_tensors()), dtype
        if sources != self._sources:
            conv, norm = self.conv, self.conv.norm
            scale = norm.weight * (norm.running_var + norm.eps).rsqrt()  # [C_out]
            conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
            weight = conv.weight * scale.view(-1, 1, 1, 1).to(conv.weight.dtype)  # keeps the layout
            self._weight = weight.to(dtype)
            self._bias = ((conv_bias - norm.running_mean) * scale + norm.bias).to(dtype)
            self._sources = sources
        return self._weight, self._bias

    def __call__(self, x: Tensor) -> Tensor:
        conv = self.conv
        if torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad):
            return type(conv).forward(conv, x)
        device = x.device.type
        autocast = torch.is_autocast_enabled(device)
        weight, bias = self._folded(torch.get_autocast_dtype(device) if autocast else conv.weight.dtype)
        x = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        return conv.activation(x) if conv.activation is not None else x


def apply_speedups(model: nn.Module) -> nn.Module:
    """Channels-last weights and folded FrozenBatchNorm (see the module docstring); the
    trainer applies it when it builds the model, the predictor to the model it wraps.
    Idempotent; parameters, buffers and checkpoints are unchanged."""
    model.to(memory_format=torch.channels_last)
    for conv in model.modules():
        if isinstance(conv, Conv2d) and isinstance(conv.norm, FrozenBatchNorm2d):
            if not isinstance(conv.forward, _FoldedForward):
                conv.forward = _FoldedForward(conv)
    return model
