"""The speed-ups (channels-last weights, FrozenBatchNorm2d folded into its convolution)
leave the results unchanged."""

import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d

from minvis.modeling.speedups import apply_speedups


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


def _is_folded(conv: Conv2d) -> bool:
    return "forward" in vars(conv)  # an instance forward replaces the class's


def test_folded_inference_equals_conv_then_norm() -> None:
    conv = _conv_with_norm()
    state = {k: v.clone() for k, v in conv.state_dict().items()}
    model = torch.nn.Sequential(conv)
    assert apply_speedups(model) is model
    assert _is_folded(conv)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 9, 11)
    with torch.no_grad():
        got = conv(x)
    torch.testing.assert_close(got, _unfolded(conv, x), rtol=1e-5, atol=1e-5)
    # Checkpoints unchanged: same keys, same values.
    assert conv.state_dict().keys() == state.keys()
    for key, value in conv.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_apply_speedups_is_idempotent() -> None:
    conv = _conv_with_norm()
    apply_speedups(conv)
    forward = conv.forward
    assert apply_speedups(conv) is conv
    assert conv.forward is forward  # not folded twice
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        got = conv(x)
    torch.testing.assert_close(got, _unfolded(conv, x), rtol=1e-5, atol=1e-5)


def test_folded_weights_follow_loaded_statistics() -> None:
    conv = _conv_with_norm()
    apply_speedups(conv)
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        conv(x)  # builds the cache
        conv.load_state_dict(_conv_with_norm(seed=1).state_dict())
        got = conv(x)
    torch.testing.assert_close(got, _unfolded(conv, x), rtol=1e-5, atol=1e-5)


def test_gradients_use_the_module_forward() -> None:
    conv = _conv_with_norm()
    apply_speedups(conv)
    x = torch.randn(1, 4, 8, 8)
    conv(x).sum().backward()
    expected = _conv_with_norm()
    _unfolded(expected, x).sum().backward()
    torch.testing.assert_close(conv.weight.grad, expected.weight.grad, rtol=1e-5, atol=1e-5)


def _frozen_norm_convs(model: torch.nn.Module) -> list[Conv2d]:
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    return [m for m in convs if isinstance(m.norm, FrozenBatchNorm2d)]


def test_the_model_itself_is_plain_and_the_trainer_applies_the_speedups(parity_cfg) -> None:
    from detectron2.modeling import build_model

    from minvis.engine.trainer import Trainer

    plain = _frozen_norm_convs(build_model(parity_cfg).backbone)
    assert plain and not any(_is_folded(m) for m in plain)  # the constructor does not fold
    model = Trainer.build_model(parity_cfg)
    with_frozen_norm = _frozen_norm_convs(model.backbone)
    assert with_frozen_norm and all(_is_folded(m) for m in with_frozen_norm)
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.dim() == 4]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
