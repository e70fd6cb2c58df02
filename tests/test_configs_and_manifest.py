"""The official configs load unchanged; models built from them have the official keys/shapes."""

import json

import pytest
from conftest import CONFIGS, FIXTURES
from detectron2.modeling import build_model

from minvis.config import build_config

ALL_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml") if not p.name.startswith("Base-"))
MANIFEST = json.loads((FIXTURES / "official_state_dict_manifest.json").read_text())


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads(path):
    cfg = build_config(str(path))
    assert cfg.MODEL.META_ARCHITECTURE == "VideoMaskFormer_frame"
    assert cfg.INPUT.SAMPLING_FRAME_NUM == 1


def test_subsampling_variants_set_the_ratio():
    for dataset in ("youtubevis_2019", "youtubevis_2021", "ovis"):
        for suffix, ratio in (("", 1.0), ("_r10", 0.1), ("_r5", 0.05), ("_r1", 0.01)):
            name = f"video_maskformer2_swin_large_IN21k_384_bs32_8ep_frame{suffix}.yaml"
            cfg = build_config(str(CONFIGS / dataset / "swin" / name))
            assert cfg.INPUT.SAMPLING_FRAME_RATIO == ratio


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_state_dict_matches_official_manifest(name):
    entry = MANIFEST[name]
    cfg = build_config(str(CONFIGS / entry["config"].removeprefix("configs/")), ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    official = entry["state_dict"]
    missing = sorted(set(official) - set(ours))
    unexpected = sorted(set(ours) - set(official))
    mismatched = sorted(k for k in set(ours) & set(official) if ours[k] != official[k])
    assert (missing, unexpected, mismatched) == ([], [], [])
    assert sum(v.numel() for v in model.state_dict().values()) >= entry["num_params"]
