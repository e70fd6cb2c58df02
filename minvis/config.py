"""Config of MinVIS: the video keys (:func:`add_minvis_config`) and a full config (:func:`build_config`).

The official video and MinVIS keys keep their names and defaults; additions default to the
official behaviour. Importing this module registers the model and the builtin datasets.
"""

from collections.abc import Sequence

from detectron2.config import CfgNode, get_cfg
from detectron2.config import CfgNode as CN
from detectron2.projects.deeplab import add_deeplab_config

from mask2former import add_maskformer2_config

from . import data, modeling  # noqa: F401  (register the builtin datasets and VideoMaskFormer_frame)


def add_minvis_config(cfg: CN) -> None:
    """Add video data, MinVIS inference and tracking keys (after ``add_maskformer2_config``)."""
    # Clip sampling (official keys and defaults; the MinVIS YAMLs train on single frames).
    cfg.INPUT.SAMPLING_FRAME_NUM = 2
    cfg.INPUT.SAMPLING_FRAME_RANGE = 20
    cfg.INPUT.SAMPLING_FRAME_SHUFFLE = False
    cfg.INPUT.AUGMENTATIONS = []
    # Fraction of each video's frames that carry usable annotations (1.0 = all).
    cfg.INPUT.SAMPLING_FRAME_RATIO = 1.0

    test = cfg.MODEL.MASK_FORMER.TEST
    # Frames per forward at inference: WINDOW_SIZE with WINDOW_INFERENCE, else one (the
    # official code then runs the whole video at once; the results are the same).
    test.WINDOW_INFERENCE = False
    test.WINDOW_SIZE = 30  # official: hard-coded 30
    # Video-level instances kept per video, over (track, class) pairs (official: 10).
    test.TOP_K = 10
    # Keep the per-frame mask logits ([Q, H/4, W/4] float32, needed for the top-k masks after
    # the last frame) in a temporary file: same results, memory flat however long the video.
    test.SPILL_MASKS_TO_DISK = True

    # The paper's analyses (section 4.3, Tables 4 and 5, Figure 5); defaults = MinVIS.
    minvis = cfg.MODEL.MINVIS = CN()
    # Tracking cost (Table 4, minvis.tracking.matching_cost): "query" (1 - cos of the query
    # embeddings), "heuristic" (mask overlap with Mask2Former's matching costs, weighted by
    # MODEL.MASK_FORMER.{CLASS,MASK,DICE}_WEIGHT) or "heuristic+query" (their sum).
    minvis.MATCHING = "query"
    # Supervised matching (Table 5): train on two frames per video and add a hinge loss
    # pulling each instance's matched queries in the two frames together.
    supervised = minvis.SUPERVISED_MATCHING = CN()
    supervised.ENABLED = False
    supervised.WEIGHT = 1.0
    # Required cosine-similarity gap between the right and every other query of frame B.
    supervised.MARGIN = 0.5
    # Max distance of the second frame: 1 = consecutive frames (the paper's "limited
    # range"); <= 0 = INPUT.SAMPLING_FRAME_RANGE.
    supervised.FRAME_RANGE = 1

    # Inference precision of the network (minvis.modeling.precision): "fp32", "fp16",
    # "bf16" (torch.autocast), or "auto": fp16 on CUDA when TEST.AMP.ENABLED (the official
    # evaluation), fp32 otherwise. Tracking and video-level scores are float32 either way.
    test.PRECISION = "auto"
    cfg.TEST.AMP = CN()
    cfg.TEST.AMP.ENABLED = True  # official key, read by PRECISION "auto"

    # Reproducibility (minvis.engine.reproducibility): torch's intra-op CPU threads (0: torch's
    # default) and deterministic algorithms.
    cfg.NUM_THREADS = 0
    cfg.DETERMINISTIC = False


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
