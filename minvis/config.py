"""Config keys of the MinVIS video framework.

Covers the official ``add_maskformer2_video_config`` and ``add_minvis_config`` keys
(same names and defaults), plus this codebase's additions, all defaulting to the
official behaviour, and the readers of the ``MODEL.MINVIS`` options.
"""

from detectron2.config import CfgNode as CN

from .matching_costs import matching_cost_terms
from .tracker import TrackingOptions

SUPERVISED_MATCHING_FRAMES = 2  # the loss compares a pair of frames


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
    # Keep the per-frame mask logits of the video-level result in a temporary file instead
    # of in memory (same results); memory then stays flat however long the video.
    test.SPILL_MASKS_TO_DISK = False

    # The paper's analyses (section 4.3, Tables 4 and 5, Figure 5); defaults = MinVIS.
    minvis = cfg.MODEL.MINVIS = CN()
    # Tracking cost (see minvis.matching_costs): "query" (1 - cos of the query embeddings),
    # "heuristic" (mask overlap with Mask2Former's matching costs, weighted by
    # MODEL.MASK_FORMER.{CLASS,MASK,DICE}_WEIGHT) or "heuristic+query" (their sum).
    minvis.MATCHING = "query"
    # A track is matched against an exponential moving average of its embeddings with this
    # momentum (0: against its last embedding only).
    minvis.TRACK_MEMORY_MOMENTUM = 0.0
    # Refuse a match whose cosine similarity to the track is below this (-1: never): the
    # track gets no query on that frame (empty mask, memory kept) and the query starts a
    # new track, so a vanished object's track is not taken over by another object.
    minvis.MIN_MATCH_SIMILARITY = -1.0
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


def tracking_options(cfg: CN) -> TrackingOptions:
    """The tracker settings of ``MODEL.MINVIS``."""
    minvis, mask_former = cfg.MODEL.MINVIS, cfg.MODEL.MASK_FORMER
    terms = matching_cost_terms(
        minvis.MATCHING,
        class_weight=mask_former.CLASS_WEIGHT,
        mask_weight=mask_former.MASK_WEIGHT,
        dice_weight=mask_former.DICE_WEIGHT,
    )
    return TrackingOptions(terms, minvis.TRACK_MEMORY_MOMENTUM, minvis.MIN_MATCH_SIMILARITY)


def training_clip_sampling(cfg: CN) -> tuple[int, int]:
    """``(frames per training clip, max distance to the reference frame)``.

    ``INPUT.SAMPLING_FRAME_{NUM,RANGE}``; with supervised matching a pair of frames at
    most ``SUPERVISED_MATCHING.FRAME_RANGE`` apart (``<= 0``: ``INPUT.SAMPLING_FRAME_RANGE``).
    """
    supervised = cfg.MODEL.MINVIS.SUPERVISED_MATCHING
    if not supervised.ENABLED:
        return cfg.INPUT.SAMPLING_FRAME_NUM, cfg.INPUT.SAMPLING_FRAME_RANGE
    frame_range = supervised.FRAME_RANGE if supervised.FRAME_RANGE > 0 else cfg.INPUT.SAMPLING_FRAME_RANGE
    return SUPERVISED_MATCHING_FRAMES, frame_range
