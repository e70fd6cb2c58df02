"""One way to build a full MinVIS config, shared by the tools, the demo and the tests."""

from collections.abc import Sequence

from detectron2.config import CfgNode, get_cfg
from detectron2.projects.deeplab import add_deeplab_config

from mask2former import add_maskformer2_config

from .config import add_minvis_config


def build_config(config_file: str | None = None, opts: Sequence[str] = (), freeze: bool = False) -> CfgNode:
    """detectron2 defaults + DeepLab + Mask2Former + MinVIS keys, then a YAML file and overrides."""
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    add_minvis_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list([str(x) for x in opts])
    if freeze:
        cfg.freeze()
    return cfg
