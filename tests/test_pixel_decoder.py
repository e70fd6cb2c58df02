"""MSDeformAttnPixelDecoder: built from the config, official state-dict keys, output shapes."""

import json
from pathlib import Path

import pytest
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.projects.deeplab import add_deeplab_config
from torch import nn

from mask2former.config import add_maskformer2_config
from mask2former.modeling.pixel_decoder.ms_deform_attn_op import (
    IMPL_ENV_VAR,
    compiled_available,
)
from mask2former.modeling.pixel_decoder.msdeformattn import MSDeformAttnPixelDecoder
from mask2former.modeling.pixel_decoder.registry import build_pixel_decoder

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"
PREFIX = "sem_seg_head.pixel_decoder."

# The pixel-decoder settings of the official R50 configs (maskformer2_R50_bs16_50ep.yaml).
OFFICIAL_R50_HEAD = [
    "MODEL.SEM_SEG_HEAD.NAME", "MaskFormerHead",
    "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res2", "res3", "res4", "res5"],
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", 256,
    "MODEL.SEM_SEG_HEAD.MASK_DIM", 256,
    "MODEL.SEM_SEG_HEAD.NORM", "GN",
    "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "MSDeformAttnPixelDecoder",
    "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES", ["res3", "res4", "res5"],
    "MODEL.SEM_SEG_HEAD.COMMON_STRIDE", 4,
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 6,
    "MODEL.MASK_FORMER.NHEADS", 8,
    "MODEL.MASK_FORMER.DROPOUT", 0.0,
]  # fmt: skip


def _config(overrides: list | None = None) -> CfgNode:
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    cfg.merge_from_list(OFFICIAL_R50_HEAD + (overrides or []))
    return cfg


def _resnet_shapes(res2_channels: int) -> dict[str, ShapeSpec]:
    # R50: res2 = 256 channels at stride 4, doubling with each stage.
    return {f"res{i + 2}": ShapeSpec(channels=res2_channels * 2**i, stride=4 * 2**i) for i in range(4)}


def _features(shapes: dict[str, ShapeSpec], batch: int, height: int, width: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        name: torch.randn(
            batch, spec.channels, height // spec.stride, width // spec.stride, generator=generator
        )
        for name, spec in shapes.items()
    }


def test_state_dict_matches_official_manifest() -> None:
    manifest = json.loads((FIXTURES / "official_state_dict_manifest.json").read_text())
    official = {
        key[len(PREFIX) :]: shape
        for key, shape in manifest["ytvis19_R50"]["state_dict"].items()
        if key.startswith(PREFIX)
    }
    decoder = build_pixel_decoder(_config(), _resnet_shapes(256))
    ours = {key: list(value.shape) for key, value in decoder.state_dict().items()}
    assert sorted(set(ours) - set(official)) == []
    assert sorted(set(official) - set(ours)) == []
    assert ours == official


def test_output_shapes() -> None:
    shapes = _resnet_shapes(256)
    cfg = _config(["MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 2])
    decoder = build_pixel_decoder(cfg, shapes)
    assert isinstance(decoder, MSDeformAttnPixelDecoder)
    decoder.eval()
    with torch.no_grad():
        mask_features, encoder_features, multi_scale = decoder.forward_features(
            _features(shapes, batch=2, height=64, width=96)
        )
    assert mask_features.shape == (2, 256, 16, 24)
    assert encoder_features.shape == (2, 256, 2, 3)
    expected_scales = [(2, 256, 2, 3), (2, 256, 4, 6), (2, 256, 8, 12)]  # strides 32, 16, 8
    assert [tuple(f.shape) for f in multi_scale] == expected_scales
    assert torch.equal(multi_scale[0], encoder_features)


def test_loads_official_tiny_checkpoint_and_implementations_agree(parity_fixture: dict) -> None:
    weights = {
        key[len(PREFIX) :]: value
        for key, value in parity_fixture["state_dict"].items()
        if key.startswith(PREFIX)
    }
    # The fixture's tiny backbone has 64 res2 channels.
    shapes = _resnet_shapes(64)
    decoder = build_pixel_decoder(_config(parity_fixture["config_overrides"]), shapes)
    decoder.load_state_dict(weights, strict=True)
    decoder.eval()
    if not compiled_available("cpu"):
        pytest.skip("torch-ms-deform-attn is not importable")

    features = _features(shapes, batch=1, height=96, width=128)
    outputs = {}
    for impl in ("compiled", "pytorch"):
        with pytest.MonkeyPatch.context() as patch, torch.no_grad():
            patch.setenv(IMPL_ENV_VAR, impl)
            outputs[impl] = decoder.forward_features(features)
    compiled_mask, compiled_encoder, compiled_scales = outputs["compiled"]
    pytorch_mask, pytorch_encoder, pytorch_scales = outputs["pytorch"]
    torch.testing.assert_close(compiled_mask, pytorch_mask, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled_encoder, pytorch_encoder, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled_scales, pytorch_scales, rtol=1e-5, atol=1e-5)


def _small_decoder() -> tuple[MSDeformAttnPixelDecoder, dict]:
    shapes = _resnet_shapes(64)
    overrides = ["MODEL.SEM_SEG_HEAD.CONVS_DIM", 32, "MODEL.SEM_SEG_HEAD.MASK_DIM", 32]
    decoder = build_pixel_decoder(_config(overrides), shapes).eval()
    return decoder, _features(shapes, batch=1, height=64, width=64)


def _flat(outputs: tuple) -> list[torch.Tensor]:
    mask_features, encoder_features, multi_scale = outputs
    return [mask_features, encoder_features, *multi_scale]


def test_module_call_is_forward_features() -> None:
    """The head calls the decoder as a module (so that hooks, e.g. the model's float32
    islands, apply to it): ``decoder(features)`` is ``forward_features``."""
    decoder, features = _small_decoder()
    calls = []
    decoder.register_forward_pre_hook(lambda module, args: calls.append(module))
    with torch.no_grad():
        called = decoder(features)
        direct = decoder.forward_features(features)
    assert calls == [decoder]
    for got, expected in zip(_flat(called), _flat(direct), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_follows_autocast_unless_a_float32_island() -> None:
    """The decoder has no precision setting of its own: under a bfloat16 autocast it runs
    in bfloat16 (close to float32); declared a float32 island it computes in float32, the
    same as without autocast."""
    from minvis.modeling.precision import float32_islands

    decoder, features = _small_decoder()
    with torch.no_grad():
        expected = decoder(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = decoder(features)
            with float32_islands([decoder]):
                island = decoder(features)
    assert low[0].dtype == torch.bfloat16
    torch.testing.assert_close(low[0].float(), expected[0], rtol=0.05, atol=0.05)
    assert {t.dtype for t in _flat(island)} == {torch.float32}
    for got, want in zip(_flat(island), _flat(expected), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_finds_decoders_registered_the_official_way() -> None:
    @SEM_SEG_HEADS_REGISTRY.register()
    class _TestOnlyPixelDecoder(nn.Module):
        def __init__(self, cfg: CfgNode, input_shape: dict[str, ShapeSpec]):
            super().__init__()

        def forward_features(self, features: dict) -> None:
            return None

    cfg = _config(["MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "_TestOnlyPixelDecoder"])
    assert isinstance(build_pixel_decoder(cfg, _resnet_shapes(256)), _TestOnlyPixelDecoder)
