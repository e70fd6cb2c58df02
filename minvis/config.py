"""Config keys of the MinVIS video framework.

Covers the official ``add_maskformer2_video_config`` and ``add_minvis_config`` keys
(same names and defaults), plus this codebase's additions, all defaulting to the
official behaviour.
"""

from detectron2.config import CfgNode as CN


def add_minvis_config(cfg: CN) -> None:
    """Add video data, MinVIS inference and tracking keys to a detectron2 config.

    Call after ``add_maskformer2_config``.
    """
    # Clip sampling (official video keys). MinVIS trains with SAMPLING_FRAME_NUM = 1.
    cfg.INPUT.SAMPLING_FRAME_NUM = 2
    cfg.INPUT.SAMPLING_FRAME_RANGE = 20
    cfg.INPUT.SAMPLING_FRAME_SHUFFLE = False
    cfg.INPUT.AUGMENTATIONS = []
    # Fraction of each video's frames that carry usable annotations (1.0 = all).
    cfg.INPUT.SAMPLING_FRAME_RATIO = 1.0

    test = cfg.MODEL.MASK_FORMER.TEST
    # Run the image model on chunks of frames instead of the whole video at once.
    test.WINDOW_INFERENCE = False
    # Frames per chunk in window inference (official: hard-coded 30).
    test.WINDOW_SIZE = 30
    # Video-level instances kept per video, over (track, class) pairs (official: 10).
    test.TOP_K = 10
    # Eval output carries per-frame compressed RLE ("pred_segmentations") instead of dense
    # masks, so memory stays bounded on long videos. The evaluator switches it on.
    test.OUTPUT_RLE = False
