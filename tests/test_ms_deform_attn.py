"""Multi-scale deformable attention: compiled kernel vs grid_sample fallback, and the layer."""

import sys

import pytest
import torch

from mask2former.modeling.pixel_decoder.ms_deform_attn import MSDeformAttn
from mask2former.modeling.pixel_decoder.ms_deform_attn_op import (
    IMPL_ENV_VAR,
    _resolve_impl,
    compiled_available,
    cpu_kernel_available,
    ms_deform_attn,
    ms_deform_attn_from_offsets,
)
from minvis.modeling.precision import float32_islands

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# (rtol, atol) per dtype for compiled vs fallback.
TOLERANCES = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-10, 1e-10)}


def _level_metadata(shapes: list[tuple[int, int]], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    spatial_shapes = torch.tensor(shapes, dtype=torch.long, device=device)  # [L, 2]
    starts = torch.cat((spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))
    return spatial_shapes, starts


def _random_inputs(
    dtype: torch.dtype, device: str, seed: int = 0, head_dim: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(12, 20), (6, 10), (3, 5), (1, 2)]
    spatial_shapes, starts = _level_metadata(shapes, device)
    batch, queries, heads, points = 2, 17, 4, 3
    total = sum(h * w for h, w in shapes)
    value = torch.randn(batch, total, heads, head_dim, generator=generator, dtype=dtype)
    # Some locations fall outside [0, 1] to exercise the zero padding.
    locations = (
        torch.rand(batch, queries, heads, len(shapes), points, 2, generator=generator, dtype=dtype) * 1.3
        - 0.15
    )
    weights = torch.rand(batch, queries, heads, len(shapes), points, generator=generator, dtype=dtype)
    weights = weights / weights.sum((-2, -1), keepdim=True)
    return (
        value.to(device),
        spatial_shapes,
        starts,
        locations.to(device),
        weights.to(device),
    )


def _value_and_grads(
    impl: str,
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    starts: torch.Tensor,
    locations: torch.Tensor,
    weights: torch.Tensor,
    grad_output: torch.Tensor,
) -> list[torch.Tensor]:
    leaves = [t.detach().clone().requires_grad_(True) for t in (value, locations, weights)]
    output = ms_deform_attn(leaves[0], spatial_shapes, starts, leaves[1], leaves[2], impl=impl)
    output.backward(grad_output)
    return [output.detach()] + [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_matches_pytorch(device: str, dtype: torch.dtype) -> None:
    if not compiled_available(device):
        pytest.skip(f"torch-ms-deform-attn is not importable or not built for {device}")
    inputs = _random_inputs(dtype, device)
    value, _, _, locations, _ = inputs
    # Seeded: the package's location gradients are off by ~1.5e-5 for some 1 in 50 draws.
    generator = torch.Generator().manual_seed(1)
    grad_output = torch.randn(
        value.shape[0], locations.shape[1], value.shape[2] * value.shape[3], dtype=dtype, generator=generator
    ).to(device)

    compiled = _value_and_grads("compiled", *inputs, grad_output)
    reference = _value_and_grads("pytorch", *inputs, grad_output)

    rtol, atol = TOLERANCES[dtype]
    names = ["output", "grad value", "grad sampling_locations", "grad attention_weights"]
    for name, got, expected in zip(names, compiled, reference):
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol, msg=name)


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel is built and tested on Linux")
def test_cpu_kernel_is_built() -> None:
    """`pip install` compiles it here; a silent build failure would cost 3x in MSDeformAttn."""
    assert cpu_kernel_available()


# 32 channels: one pass of two 16-float sums; 48: then a 16-float pass; 3 and 37: scalar tails.
@pytest.mark.parametrize("head_dim", [32, 48, 3, 37])
def test_cpu_kernel_matches_pytorch(head_dim: int) -> None:
    if not cpu_kernel_available():
        pytest.skip("the CPU kernel was not built")
    inputs = _random_inputs(torch.float32, "cpu", seed=head_dim, head_dim=head_dim)
    value, _, _, locations, weights = inputs
    with torch.no_grad():
        assert _resolve_impl("compiled", value, locations, weights) == "cpu_kernel"
        got = ms_deform_attn(*inputs, impl="compiled")
    expected = ms_deform_attn(*inputs, impl="pytorch")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_cpu_kernel_takes_gradients_only_from_offsets() -> None:
    """Its backward pass is the from-offsets op's: the plain op's gradient calls go to the
    package's kernel, float64 calls never to the CPU kernel."""
    value, shapes, starts, locations, weights = _random_inputs(torch.float32, "cpu")
    value.requires_grad_(True)
    assert _resolve_impl("auto", value, locations, weights) != "cpu_kernel"
    output = ms_deform_attn(value, shapes, starts, locations, weights)
    assert output.grad_fn is not None
    cpu_kernel_or_else = (
        "cpu_kernel" if cpu_kernel_available() else "package" if compiled_available() else "pytorch"
    )
    assert _resolve_impl("auto", value, locations, weights, differentiable=True) == cpu_kernel_or_else
    with torch.no_grad():
        assert _resolve_impl("auto", value, locations, weights) == cpu_kernel_or_else
    doubles = value.double(), locations.double(), weights.double()
    assert _resolve_impl("auto", *doubles, differentiable=True) != "cpu_kernel"


def test_cpu_kernel_refuses_a_level_outside_the_values() -> None:
    if not cpu_kernel_available():
        pytest.skip("the CPU kernel was not built")
    value, _, starts, locations, weights = _random_inputs(torch.float32, "cpu")
    too_large = torch.tensor([[12, 20], [6, 10], [3, 5], [2, 2]])  # the last level has 2 positions
    with torch.no_grad(), pytest.raises(RuntimeError, match="level 3 does not fit"):
        ms_deform_attn(value, too_large, starts, locations, weights, impl="compiled")


@pytest.mark.parametrize("impl", ["pytorch", "compiled"])
def test_hand_computed(impl: str) -> None:
    if impl == "compiled" and not (cpu_kernel_available() or compiled_available()):
        pytest.skip("no compiled kernel")
    # One level of 3x4 pixels, one head of 2 channels; value[y, x] = (10 * y + x, -(10 * y + x)).
    height, width = 3, 4
    spatial_shapes, starts = _level_metadata([(height, width)], "cpu")
    ids = torch.arange(height * width, dtype=torch.float32)
    pixel_values = 10 * (ids // width) + ids % width  # [H*W]
    value = torch.stack([pixel_values, -pixel_values], -1).view(1, height * width, 1, 2)
    # Query 0: the centre of pixel (y=1, x=2); query 1: halfway between the centres of
    # (y=0, x=0) and (y=0, x=1); query 2: outside the map.
    xy = torch.tensor(
        [[(2 + 0.5) / width, (1 + 0.5) / height], [1.0 / width, 0.5 / height], [1.5, 0.5]],
    )
    locations = xy.view(1, 3, 1, 1, 1, 2)
    weights = torch.full((1, 3, 1, 1, 1), 0.25)

    with torch.no_grad():
        output = ms_deform_attn(value, spatial_shapes, starts, locations, weights, impl=impl)

    expected = torch.tensor([[12.0, -12.0], [0.5, -0.5], [0.0, 0.0]]) * 0.25
    torch.testing.assert_close(output, expected[None])


def test_env_var_selects_implementation(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = _random_inputs(torch.float64, "cpu")
    monkeypatch.setenv(IMPL_ENV_VAR, "pytorch")
    from_env = ms_deform_attn(*inputs)
    torch.testing.assert_close(from_env, ms_deform_attn(*inputs, impl="pytorch"), rtol=0, atol=0)

    monkeypatch.setenv(IMPL_ENV_VAR, "fast")
    with pytest.raises(ValueError, match="must be one of"):
        ms_deform_attn(*inputs)


def test_layer_initialisation() -> None:
    layer = MSDeformAttn(d_model=32, n_levels=2, n_heads=8, n_points=3)
    offsets = layer.sampling_offsets.bias.detach().view(8, 2, 3, 2)  # [M, L, P, 2]
    # Head 0 points right, head 1 diagonally down-right, head 2 down; point k at k + 1 pixels.
    torch.testing.assert_close(offsets[0, 1, 2], torch.tensor([3.0, 0.0]))
    torch.testing.assert_close(offsets[1, 0, 1], torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(offsets[2, 1, 0], torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)
    assert torch.equal(offsets[:, 0], offsets[:, 1])
    assert not layer.sampling_offsets.weight.any()
    assert not layer.attention_weights.weight.any()
    assert not layer.attention_weights.bias.any()


@pytest.mark.parametrize("device", DEVICES)
def test_layer_same_output_with_both_implementations(device: str) -> None:
    if not compiled_available(device):
        pytest.skip(f"torch-ms-deform-attn is not importable or not built for {device}")
    torch.manual_seed(0)
    shapes = [(8, 10), (4, 5)]
    spatial_shapes, starts = _level_metadata(shapes, device)
    layer = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=2).to(device)
    with torch.no_grad():  # make offsets and weights depend on the query
        layer.sampling_offsets.weight.normal_(std=0.1)
        layer.attention_weights.weight.normal_(std=0.1)
    total = sum(h * w for h, w in shapes)
    src = torch.randn(2, total, 32, device=device)
    reference_points = torch.rand(2, total, 2, 2, device=device)

    outputs = {}
    for impl in ("compiled", "pytorch"):
        padding_mask = torch.zeros(2, total, dtype=torch.bool, device=device)
        padding_mask[1, -5:] = True
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(IMPL_ENV_VAR, impl)
            outputs[impl] = layer(src, reference_points, src, spatial_shapes, starts, padding_mask)
    assert outputs["pytorch"].shape == (2, total, 32)
    torch.testing.assert_close(outputs["compiled"], outputs["pytorch"], rtol=1e-5, atol=1e-5)


def test_layer_equals_the_paper_formula() -> None:
    """Locations = reference + offset / (W_l, H_l), weights = softmax over levels x points,
    as written out here; the layer folds the division into its projection."""
    torch.manual_seed(1)
    shapes = [(8, 10), (4, 5)]
    spatial_shapes, starts = _level_metadata(shapes, "cpu")
    layer = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3)
    with torch.no_grad():
        layer.sampling_offsets.weight.normal_(std=0.5)
        layer.attention_weights.weight.normal_(std=0.5)
        layer.attention_weights.bias[::5] = 200.0  # exp(200) overflows float32: needs a stable softmax
    total = sum(h * w for h, w in shapes)
    src = torch.randn(2, total, 32, requires_grad=True)
    reference = torch.rand(2, total, 2, 2)

    offsets = layer.sampling_offsets(src).view(2, total, 4, 2, 3, 2)
    sizes = spatial_shapes.flip(-1).float()  # (W_l, H_l)
    locations = reference[:, :, None, :, None, :] + offsets / sizes[None, None, None, :, None, :]
    weights = torch.softmax(layer.attention_weights(src).view(2, total, 4, 6), -1).view(2, total, 4, 2, 3)
    value = layer.value_proj(src).view(2, total, 4, 8)
    expected = layer.output_proj(ms_deform_attn(value, spatial_shapes, starts, locations, weights))
    expected_grad = torch.autograd.grad(expected.sum(), src)[0]

    got = layer(src, reference, src, spatial_shapes, starts)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.autograd.grad(got.sum(), src)[0], expected_grad, rtol=1e-4, atol=1e-5)
    # Inference: the CPU kernel (when built) adds the offsets and takes the softmax itself.
    with torch.no_grad():
        assert (_resolve_impl(None, src, reference) == "cpu_kernel") == cpu_kernel_available()
        inferred = layer(src, reference, src, spatial_shapes, starts)
    torch.testing.assert_close(inferred, expected, rtol=1e-4, atol=1e-5)


def _offsets_inputs(seed: int = 0, requires_grad: bool = False) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    value, shapes, starts, _, _ = _random_inputs(torch.float32, "cpu", seed=seed)
    batch, queries, heads, levels, points = value.shape[0], 17, value.shape[2], len(shapes), 3
    reference = torch.rand(batch, queries, levels, 2, generator=generator)
    offsets = torch.randn(batch, queries, heads, levels, points, 2, generator=generator) * 0.2
    logits = torch.randn(batch, queries, heads, levels, points, generator=generator) * 3
    if requires_grad:
        value, offsets, logits = (t.requires_grad_(True) for t in (value, offsets, logits))
    return value, shapes, starts, reference, offsets, logits


def _from_offsets_by_hand(value, shapes, starts, reference, offsets, logits) -> torch.Tensor:
    """Locations = reference + offsets, weights = softmax over each query and head's
    levels x points, then the plain sampling (grid_sample fallback)."""
    locations = reference[:, :, None, :, None, :] + offsets
    weights = torch.softmax(logits.flatten(-2), -1).view_as(logits)
    return ms_deform_attn(value, shapes, starts, locations, weights, impl="pytorch")


@pytest.mark.parametrize("impl", [None, "auto", "pytorch", "compiled"])
def test_from_offsets_dispatches_itself(impl: str | None) -> None:
    if impl == "compiled" and not (cpu_kernel_available() or compiled_available()):
        pytest.skip("no compiled kernel")
    inputs = _offsets_inputs()
    expected = _from_offsets_by_hand(*inputs)
    with torch.no_grad():
        got = ms_deform_attn_from_offsets(*inputs, impl=impl)
    assert got.shape == (2, 17, 32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_from_offsets_with_gradients_and_float64() -> None:
    """With gradients (to value, offsets and logits; this project's kernel when built) and in
    float64 (the locations + softmax path) the same as by hand."""
    inputs = _offsets_inputs(seed=3, requires_grad=True)
    got = ms_deform_attn_from_offsets(*inputs)
    assert got.grad_fn is not None
    grads = torch.autograd.grad(got.square().sum(), [inputs[0], inputs[4], inputs[5]])
    expected = _from_offsets_by_hand(*inputs)
    expected_grads = torch.autograd.grad(expected.square().sum(), [inputs[0], inputs[4], inputs[5]])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for name, g, e in zip(("value", "offsets", "logits"), grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5, msg=name)

    doubles = [t.detach().double() if t.is_floating_point() else t for t in _offsets_inputs(seed=4)]
    with torch.no_grad():
        got64 = ms_deform_attn_from_offsets(*doubles)
    assert got64.dtype == torch.float64
    torch.testing.assert_close(got64, _from_offsets_by_hand(*doubles), rtol=1e-10, atol=1e-10)


def _border_inputs(head_dim: int, seed: int) -> tuple[torch.Tensor, ...]:
    """From-offsets inputs (float32) with samples inside the maps, across their borders (a
    corner outside) and outside them."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(12, 20), (6, 10), (3, 5), (1, 2)]
    spatial_shapes, starts = _level_metadata(shapes, "cpu")
    batch, queries, heads, levels, points = 2, 29, 3, len(shapes), 4
    value = torch.randn(batch, sum(h * w for h, w in shapes), heads, head_dim, generator=generator)
    reference = torch.rand(batch, queries, levels, 2, generator=generator) * 1.2 - 0.1
    offsets = torch.randn(batch, queries, heads, levels, points, 2, generator=generator) * 0.15
    logits = torch.randn(batch, queries, heads, levels, points, generator=generator) * 2
    sizes = spatial_shapes.flip(-1)[:, None].float()  # [L, 1, 2] (W, H)
    pixels = (reference[:, :, None, :, None] + offsets) * sizes - 0.5  # [N, Q, M, L, P, 2]
    inside = ((pixels >= 0) & (pixels <= sizes - 1)).all(-1)
    outside = ((pixels <= -1) | (pixels >= sizes)).any(-1)
    assert inside.sum() > 100 and outside.sum() > 100 and (~inside & ~outside).sum() > 100
    return value, spatial_shapes, starts, reference, offsets, logits


# 3: scalar channels only; 20: one 16-channel pass and a scalar tail; 32: two passes.
@pytest.mark.parametrize("head_dim", [3, 20, 32])
def test_cpu_kernel_gradients_equal_the_float64_fallback(head_dim: int) -> None:
    """The from-offsets op's backward pass, to all four float inputs, against the grid_sample
    fallback computed in float64 on the same inputs."""
    if not cpu_kernel_available():
        pytest.skip("the CPU kernel was not built")
    value, shapes, starts, reference, offsets, logits = _border_inputs(head_dim, seed=head_dim)
    sizes = (value.shape[0], offsets.shape[1], value.shape[2] * head_dim)  # [N, Q, M*D]
    grad_output = torch.randn(sizes, generator=torch.Generator().manual_seed(head_dim))

    def output_and_grads(dtype: torch.dtype, impl: str) -> list[torch.Tensor]:
        leaves = [t.detach().to(dtype).requires_grad_(True) for t in (value, reference, offsets, logits)]
        assert (_resolve_impl(impl, *leaves, differentiable=True) == "cpu_kernel") == (impl == "compiled")
        output = ms_deform_attn_from_offsets(leaves[0], shapes, starts, *leaves[1:], impl=impl)
        output.backward(grad_output.to(dtype))
        return [output] + [leaf.grad for leaf in leaves]

    got = output_and_grads(torch.float32, "compiled")
    expected = output_and_grads(torch.float64, "pytorch")
    names = ["output"] + [f"grad {name}" for name in ("value", "reference", "offsets", "logits")]
    for name, g, e in zip(names, got, expected):  # float32 rounding: ~1e-6 of the largest entry
        assert g.dtype == torch.float32
        torch.testing.assert_close(g.double(), e, rtol=1e-5, atol=1e-5 * e.abs().max().item(), msg=name)


def test_cpu_kernel_backward_for_some_inputs_only() -> None:
    """Only value needs a gradient here (the encoder's reference points never do): this
    project's backward pass runs and leaves the other inputs without one."""
    if not cpu_kernel_available():
        pytest.skip("the CPU kernel was not built")
    value, shapes, starts, reference, offsets, logits = _border_inputs(8, seed=0)
    value.requires_grad_(True)
    output = ms_deform_attn_from_offsets(value, shapes, starts, reference, offsets, logits)
    assert "minvis" in type(output.grad_fn).__name__
    output.sum().backward()
    assert value.grad.abs().sum() > 0 and reference.grad is None and offsets.grad is None


def test_layer_follows_the_callers_precision_and_float32_islands() -> None:
    """The layer itself keeps no float32 region: under a bfloat16 autocast its projections
    run in bfloat16, unless the caller declares the offset and weight projections float32
    islands; the sampling always gets float32 values, and float32 locations and weights
    with the islands (then the result is closer to the float32 one)."""
    torch.manual_seed(2)
    shapes = [(8, 10), (4, 5)]
    spatial_shapes, starts = _level_metadata(shapes, "cpu")
    layer = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=2).eval()
    with torch.no_grad():
        layer.sampling_offsets.weight.normal_(std=0.5)
        layer.attention_weights.weight.normal_(std=0.5)
    total = sum(h * w for h, w in shapes)
    src, reference = torch.randn(2, total, 32), torch.rand(2, total, 2, 2)

    dtypes: dict[str, torch.dtype] = {}
    for name in ("sampling_offsets", "attention_weights", "value_proj", "output_proj"):
        getattr(layer, name).register_forward_hook(
            lambda module, args, output, name=name: dtypes.__setitem__(name, output.dtype)
        )
    sampled: list[tuple[torch.dtype, ...]] = []
    layer_module = sys.modules[MSDeformAttn.__module__]  # the package re-exports a function of that name

    def spy(value, shapes, starts, reference, offsets, logits, *args):
        sampled.append((value.dtype, reference.dtype, offsets.dtype, logits.dtype))
        return ms_deform_attn_from_offsets(value, shapes, starts, reference, offsets, logits, *args)

    with pytest.MonkeyPatch.context() as patch, torch.no_grad():
        patch.setattr(layer_module, "ms_deform_attn_from_offsets", spy)
        full = layer(src, reference, src, spatial_shapes, starts)
        assert set(dtypes.values()) == {torch.float32} and sampled[-1] == (torch.float32,) * 4
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = layer(src, reference, src, spatial_shapes, starts)
            assert set(dtypes.values()) == {torch.bfloat16}
            assert sampled[-1] == (torch.float32, torch.float32, torch.bfloat16, torch.bfloat16)
            with float32_islands([layer.sampling_offsets, layer.attention_weights]):
                islands = layer(src, reference, src, spatial_shapes, starts)
            assert dtypes["sampling_offsets"] == dtypes["attention_weights"] == torch.float32
            assert dtypes["value_proj"] == dtypes["output_proj"] == torch.bfloat16
            assert sampled[-1] == (torch.float32,) * 4
    assert plain.dtype == islands.dtype == torch.bfloat16
    # bfloat16 has 8 bits of mantissa: both close to float32, well within a few percent.
    scale = full.abs().max()
    assert (plain.float() - full).abs().max() < 0.05 * scale
    assert (islands.float() - full).abs().max() < 0.05 * scale
