"""Tests of the Swin Transformer backbone (``D2SwinTransformer``)."""

import json
from pathlib import Path

import pytest
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_backbone
from detectron2.projects.deeplab import add_deeplab_config

from mask2former.config import add_maskformer2_config
from mask2former.modeling.backbone.swin import (
    CROSS_REGION_LOGIT,
    D2SwinTransformer,
    DropPath,
    SwinTransformerBlock,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
)
from minvis.config import add_minvis_config

MANIFEST = (
    Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official_state_dict_manifest.json"
)


def swin_cfg(**swin_overrides: object) -> CfgNode:
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    add_minvis_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "D2SwinTransformer"
    for key, value in swin_overrides.items():
        cfg.MODEL.SWIN[key] = value
    return cfg


def tiny_cfg(**swin_overrides: object) -> CfgNode:
    tiny = {
        "EMBED_DIM": 24,
        "DEPTHS": [2, 2, 2, 2],
        "NUM_HEADS": [1, 2, 4, 8],
        "WINDOW_SIZE": 7,
    }
    return swin_cfg(**(tiny | swin_overrides))


def swin_large_cfg() -> CfgNode:
    return swin_cfg(
        EMBED_DIM=192,
        DEPTHS=[2, 2, 18, 2],
        NUM_HEADS=[6, 12, 24, 48],
        WINDOW_SIZE=12,
        APE=False,
        DROP_PATH_RATE=0.3,
        PATCH_NORM=True,
        PRETRAIN_IMG_SIZE=384,
    )


def official_backbone_shapes(entry: str) -> dict[str, list[int]]:
    state_dict = json.loads(MANIFEST.read_text())[entry]["state_dict"]
    prefix = "backbone."
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


# --- (1) checkpoint compatibility -------------------------------------------------------------


def test_swin_large_state_dict_matches_official_manifest() -> None:
    expected = official_backbone_shapes("ytvis19_SwinL")
    assert expected == official_backbone_shapes("ytvis21_SwinL")

    backbone = build_backbone(swin_large_cfg())
    assert isinstance(backbone, D2SwinTransformer)
    ours = {k: list(v.shape) for k, v in backbone.state_dict().items()}

    assert sorted(expected.keys() - ours.keys()) == []  # missing
    assert sorted(ours.keys() - expected.keys()) == []  # unexpected
    assert {k: (ours[k], v) for k, v in expected.items() if ours[k] != v} == {}  # mismatched

    assert {k: (s.channels, s.stride) for k, s in backbone.output_shape().items()} == {
        "res2": (192, 4),
        "res3": (384, 8),
        "res4": (768, 16),
        "res5": (1536, 32),
    }
    assert backbone.size_divisibility == 32
    # Stochastic depth rises linearly over the 24 blocks, from 0 to DROP_PATH_RATE.
    rates = [block.drop_path.drop_prob for layer in backbone.layers for block in layer.blocks]
    assert len(rates) == 24
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert rates[2] == pytest.approx(0.3 * 2 / 23)


# --- (2) forward on a size that is not a multiple of 32 ---------------------------------------


def test_tiny_swin_forward_shapes_on_unaligned_input() -> None:
    torch.manual_seed(0)
    backbone = build_backbone(tiny_cfg()).eval()
    x = torch.randn(2, 3, 100, 132)
    with torch.no_grad():
        features = backbone(x)

    shapes = backbone.output_shape()
    assert list(features) == ["res2", "res3", "res4", "res5"]
    expected_hw = {"res2": (25, 33), "res3": (13, 17), "res4": (7, 9), "res5": (4, 5)}
    for name, feature in features.items():
        stride = shapes[name].stride
        assert stride == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}[name]
        assert expected_hw[name] == (-(-100 // stride), -(-132 // stride))
        assert feature.shape == (2, shapes[name].channels, *expected_hw[name])
        assert feature.is_contiguous()
        assert torch.isfinite(feature).all()
    assert [shapes[n].channels for n in features] == [24, 48, 96, 192]
    # Samples are processed independently.
    with torch.no_grad():
        single = backbone(x[1:])
    torch.testing.assert_close(single["res5"], features["res5"][1:], atol=1e-5, rtol=1e-5)


def test_out_features_subset_and_absolute_position_embedding() -> None:
    backbone = build_backbone(tiny_cfg(OUT_FEATURES=["res3", "res5"], APE=True)).eval()
    assert list(backbone.output_shape()) == ["res3", "res5"]
    # Learned at PRETRAIN_IMG_SIZE / PATCH_SIZE and interpolated to any input grid.
    assert backbone.absolute_pos_embed is not None
    assert backbone.absolute_pos_embed.shape == (1, 24, 56, 56)
    assert "absolute_pos_embed" in backbone.state_dict()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "res3": (1, 48, 8, 12),
        "res5": (1, 192, 2, 3),
    }

    with pytest.raises(ValueError, match="OUT_FEATURES"):
        build_backbone(tiny_cfg(OUT_FEATURES=["res6"]))


def test_gradient_checkpointing_matches_plain_forward_and_backward() -> None:
    torch.manual_seed(0)
    plain = build_backbone(tiny_cfg(DROP_PATH_RATE=0.0))
    checkpointed = build_backbone(tiny_cfg(DROP_PATH_RATE=0.0, USE_CHECKPOINT=True))
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 60, 44)

    losses = [sum(f.square().mean() for f in model(x).values()) for model in (plain, checkpointed)]
    torch.testing.assert_close(losses[0], losses[1])
    for loss in losses:
        loss.backward()
    table = "layers.1.blocks.1.attn.relative_position_bias_table"
    grads = [dict(m.named_parameters())[table].grad for m in (plain, checkpointed)]
    assert grads[0] is not None and grads[0].abs().sum() > 0  # the bias is trained
    torch.testing.assert_close(grads[0], grads[1])


# --- (3) hand-checkable invariants -------------------------------------------------------------


def test_relative_position_index_window_2() -> None:
    # Tokens (y, x) in order (0,0), (0,1), (1,0), (1,1); index = (dy + 1) * 3 + (dx + 1),
    # with (dy, dx) = query position - key position.
    expected = torch.tensor(
        [
            [4, 3, 1, 0],
            [5, 4, 2, 1],
            [7, 6, 4, 3],
            [8, 7, 5, 4],
        ]
    )
    assert torch.equal(relative_position_index(2), expected)
    index = relative_position_index(12)
    assert index.shape == (144, 144)
    assert index.min() == 0 and index.max() == 23 * 23 - 1
    assert torch.equal(index.diagonal(), torch.full((144,), 11 * 23 + 11))


def test_shifted_window_mask_by_hand() -> None:
    # 4x4 map, window 2, shift 1. After rolling up/left by one, the region labels (row band *
    # 3 + column band; bands: rows/cols 0-1 -> 0, 2 -> 1, 3 (wrapped) -> 2) are
    #   0 0 1 2
    #   0 0 1 2
    #   3 3 4 5
    #   6 6 7 8
    mask = shifted_window_mask(4, 4, window=2, shift=1)
    assert mask.shape == (4, 4, 4)
    m = CROSS_REGION_LOGIT
    top_left = torch.zeros(4, 4)  # labels 0 0 / 0 0
    top_right = torch.tensor(  # labels 1 2 / 1 2
        [[0, m, 0, m], [m, 0, m, 0], [0, m, 0, m], [m, 0, m, 0]]
    )
    bottom_left = torch.tensor(  # labels 3 3 / 6 6
        [[0, 0, m, m], [0, 0, m, m], [m, m, 0, 0], [m, m, 0, 0]]
    )
    bottom_right = torch.full((4, 4), m).fill_diagonal_(0)  # labels 4 5 / 7 8
    assert torch.equal(mask, torch.stack([top_left, top_right, bottom_left, bottom_right]))


def test_window_attention_does_not_mix_masked_regions() -> None:
    torch.manual_seed(0)
    attn = WindowAttention(dim=8, window=2, num_heads=2).eval()
    mask = shifted_window_mask(4, 4, window=2, shift=1)[1:2]  # regions {0, 2} and {1, 3}
    x = torch.randn(1, 4, 8)
    perturbed = x.clone()
    perturbed[0, 0] += 5.0
    with torch.no_grad():
        out, out_perturbed = attn(x, mask), attn(perturbed, mask)
        unmasked = attn(perturbed, None)
    changed = (out - out_perturbed).abs().amax(-1)[0]  # [4]
    assert changed[[1, 3]].max() < 1e-6 and changed[[0, 2]].min() > 1e-3
    assert (out - unmasked).abs().amax(-1)[0, [1, 3]].min() > 1e-3


@pytest.mark.parametrize(
    ("shift", "receptive"),
    [
        # Plain windows: (0, 0) shares the top-left 2x2 window.
        (0, {(0, 0), (0, 1), (1, 0), (1, 1)}),
        # Shifted windows: (0, 0) is rolled next to (3, 3), (0, 3), (3, 0), which are not its
        # neighbours, so the mask leaves it alone in its window.
        (1, {(0, 0)}),
    ],
)
def test_block_receptive_field_of_one_token(shift: int, receptive: set[tuple[int, int]]) -> None:
    torch.manual_seed(0)
    block = SwinTransformerBlock(dim=8, num_heads=2, window=2, shift=shift).eval()
    mask = shifted_window_mask(4, 4, window=2, shift=1)
    x = torch.randn(1, 16, 8)
    perturbed = x.clone()
    perturbed[0, 0] = 5.0 * torch.randn(8)  # token (0, 0); not a constant, which norm1 removes
    with torch.no_grad():
        delta = (block(x, 4, 4, mask) - block(perturbed, 4, 4, mask)).abs().amax(-1).view(4, 4)
    changed = {(int(y), int(x)) for y, x in (delta > 1e-5).nonzero()}
    assert changed == receptive


def test_drop_path() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 5, 3)
    drop = DropPath(0.5)
    assert drop.eval()(x) is x
    assert DropPath(0.0).train()(x) is x

    y = drop.train()(x)
    per_sample = (y / x).flatten(1)  # each sample is dropped (0) or kept and scaled (2)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    assert set(per_sample[:, 0].round().tolist()) == {0.0, 2.0}

    backbone = build_backbone(tiny_cfg(DROP_PATH_RATE=0.5)).eval()
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        first, second = backbone(image), backbone(image)
    assert all(torch.equal(first[k], second[k]) for k in first)
