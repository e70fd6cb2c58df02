"""Every official leaf config, merged with this project's setup, equals the official merged config.

The fixture holds, per leaf, all keys of the config the official ``train_net_video.py`` setup
builds from the official YAML (see tests/fixtures/official_configs/README.md). Keys that only
this project defines are allowed; every official key must exist here with the same value.
"""

import json
from pathlib import Path

import pytest
from conftest import CONFIGS
from detectron2.config import CfgNode

from minvis.config import build_config

FIXTURE = Path(__file__).parent / "fixtures" / "official_configs" / "official_merged_configs.json"
OFFICIAL: dict[str, dict] = json.loads(FIXTURE.read_text())
NUM_OFFICIAL_LEAVES = 15  # 3 datasets x (R50, Swin-L, Swin-L with 10% / 5% / 1% of the annotations)


def flatten(node: CfgNode, prefix: str = "") -> dict:
    """``{"A.B.C": value}`` for every leaf key; tuples become lists, as in the JSON fixture."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, CfgNode):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.loads(json.dumps(value))
    return flat


def same(a, b) -> bool:
    """Equal values of the same JSON type (True is not 1, 1 is not 1.0)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_fixture_covers_every_official_leaf():
    ours = {
        str(p.relative_to(CONFIGS))
        for p in CONFIGS.rglob("*.yaml")
        if not p.name.startswith("Base-") and p.parent.name != "tiny"
    }
    assert len(OFFICIAL) == NUM_OFFICIAL_LEAVES
    assert ours == set(OFFICIAL)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_config_equals_official_merged_config(name):
    official = OFFICIAL[name]
    ours = flatten(build_config(str(CONFIGS / name)))
    missing = sorted(set(official) - set(ours))
    differing = [
        f"{key}: official {official[key]!r}, ours {ours[key]!r}"
        for key in sorted(set(official) & set(ours))
        if not same(official[key], ours[key])
    ]
    if missing or differing:
        pytest.fail(
            f"{name}: {len(missing)} official keys missing: {missing}; {len(differing)} differ:\n  "
            + "\n  ".join(differing),
            pytrace=False,
        )
