"""The Swin backbone computes what the official one computes, on fixtures recorded from the
official ``D2SwinTransformer`` (see tests/fixtures/swin/README.md)."""

from functools import cache
from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import Backbone, ShapeSpec, build_backbone
from detectron2.projects.deeplab import add_deeplab_config

from mask2former.config import add_maskformer2_config
from mask2former.modeling.backbone.swin import D2SwinTransformer

SWIN_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "swin"
TOLERANCE = 1e-4  # absolute, on every element of every feature map (float32)


@cache
def load_case(name: str) -> tuple[dict, Backbone]:
    """The fixture ``name`` and our backbone built from its config, with its weights (eval mode)."""
    fixture = torch.load(SWIN_FIXTURES / f"{name}.pth", weights_only=True)
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    cfg.merge_from_list(fixture["config_overrides"])
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(backbone, D2SwinTransformer)
    # Buffers (the relative position indices) are computed, not learned: ours must equal the
    # official ones before the checkpoint overwrites them.
    for key, buffer in backbone.named_buffers():
        assert torch.equal(buffer, fixture["state_dict"][key]), key
    backbone.load_state_dict(fixture["state_dict"], strict=True)
    # The configs keep stochastic depth on (DROP_PATH_RATE 0.3): eval must switch it off.
    assert max(b.drop_path.drop_prob for layer in backbone.layers for b in layer.blocks) > 0
    return fixture, backbone.eval()


@pytest.mark.parametrize(
    ("name", "input_name"),
    [
        ("swin_w7_s0", "padded"),  # 2x3x66x98: patch, window and merging padding; APE
        ("swin_w7_s0", "aligned"),  # 1x3x112x112: whole windows at res2-res4; APE
        ("swin_w12_s0", "padded"),  # Swin-L 384's window 12 (even, shift 6)
    ],
)
def test_features_match_official(name: str, input_name: str) -> None:
    fixture, backbone = load_case(name)
    reference = fixture["outputs"][input_name]
    with torch.no_grad():
        ours = backbone(fixture["inputs"][input_name])
    assert list(ours) == list(reference) == ["res2", "res3", "res4", "res5"]
    assert {k: ours[k].shape for k in ours} == {k: v.shape for k, v in reference.items()}
    errors = {k: (ours[k] - reference[k]).abs().max().item() for k in reference}
    assert max(errors.values()) < TOLERANCE, errors
