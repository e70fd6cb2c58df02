"""FrozenBatchNorm2d folded into its convolution for inference."""

import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d

from minvis.modeling.folded_batchnorm import fold_frozen_batchnorm


def _conv_with_norm(seed: int = 0) -> Conv2d:
    torch.manual_seed(seed)
    norm = FrozenBatchNorm2d(6)
    norm.weight.uniform_(0.5, 2.0)
    norm.bias.normal_()
    norm.running_mean.normal_()
    norm.running_var.uniform_(0.1, 3.0)
    return Conv2d(4, 6, kernel_size=3, padding=1, stride=2, bias=True, norm=norm, activation=torch.relu)


def _unfolded(conv: Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The hand-written formula: conv, then (y - mean) / sqrt(var + eps) * gamma + beta, then ReLU."""
    norm = conv.norm
    y = torch.nn.functional.conv2d(x, conv.weight, conv.bias, stride=2, padding=1)
    y = (y - norm.running_mean[:, None, None]) / (norm.running_var[:, None, None] + norm.eps).sqrt()
    return torch.relu(y * norm.weight[:, None, None] + norm.bias[:, None, None])


def test_folded_inference_equals_conv_then_norm() -> None:
    conv = _conv_with_norm()
    keys = set(conv.state_dict())
    assert fold_frozen_batchnorm(torch.nn.Sequential(conv)) == 1
    x = torch.randn(2, 4, 9, 11)
    with torch.no_grad():
        got = conv(x)
    torch.testing.assert_close(got, _unfolded(conv, x), rtol=1e-5, atol=1e-5)
    assert set(conv.state_dict()) == keys  # checkpoints unchanged


def test_folded_weights_follow_loaded_statistics() -> None:
    conv = _conv_with_norm()
    fold_frozen_batchnorm(conv)
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        conv(x)  # builds the cache
        conv.load_state_dict(_conv_with_norm(seed=1).state_dict())
        got = conv(x)
    torch.testing.assert_close(got, _unfolded(conv, x), rtol=1e-5, atol=1e-5)


def test_gradients_use_the_module_forward() -> None:
    conv = _conv_with_norm()
    fold_frozen_batchnorm(conv)
    x = torch.randn(1, 4, 8, 8)
    conv(x).sum().backward()
    expected = _conv_with_norm()
    _unfolded(expected, x).sum().backward()
    torch.testing.assert_close(conv.weight.grad, expected.weight.grad, rtol=1e-5, atol=1e-5)


def test_model_backbone_is_folded(parity_cfg) -> None:
    from detectron2.modeling import build_model

    backbone = build_model(parity_cfg).backbone
    convs = [m for m in backbone.modules() if isinstance(m, Conv2d)]
    with_frozen_norm = [m for m in convs if isinstance(m.norm, FrozenBatchNorm2d)]
    assert with_frozen_norm and all("forward" in vars(m) for m in with_frozen_norm)
