"""Turn a YouTube-VIS video dict into model input: a clip of frames and per-frame targets."""

import logging
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.config import CfgNode, configurable
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Instances

from .augmentation import augment_clip, build_augmentation
from .preprocess import CHANNEL_ORDERS, image_to_tensor
from .sampling import sample_clip_frames
from .video_io import VideoReadError, read_image
from .ytvis import YTVISFormatError

logger = logging.getLogger(__name__)

SUPERVISED_MATCHING_FRAMES = 2  # the supervised matching loss compares a pair of frames


def training_clip_sampling(cfg: CfgNode) -> tuple[int, int]:
    """``(frames per training clip, max distance to the reference frame)``; supervised matching
    trains on pairs of frames."""
    supervised = cfg.MODEL.MINVIS.SUPERVISED_MATCHING
    if not supervised.ENABLED:
        return cfg.INPUT.SAMPLING_FRAME_NUM, cfg.INPUT.SAMPLING_FRAME_RANGE
    frame_range = supervised.FRAME_RANGE if supervised.FRAME_RANGE > 0 else cfg.INPUT.SAMPLING_FRAME_RANGE
    return SUPERVISED_MATCHING_FRAMES, frame_range


def segmentation_to_mask(
    segm: Any, transforms: T.Transform, in_size: tuple[int, int], out_size: tuple[int, int]
) -> np.ndarray:
    """Rasterise one instance's segmentation after ``transforms``, (H, W) bool: polygons as
    coordinates, at the output size; RLE as a segmentation map (nearest neighbour)."""
    if isinstance(segm, dict):
        rle = segm
        if isinstance(rle["counts"], list):
            rle = mask_util.frPyObjects(rle, *in_size)
        return transforms.apply_segmentation(mask_util.decode(rle)).astype(bool)
    polygons = [
        transforms.apply_coords(np.asarray(p, dtype=np.float64).reshape(-1, 2)).ravel().tolist() for p in segm
    ]
    rles = mask_util.frPyObjects(polygons, *out_size)
    return mask_util.decode(mask_util.merge(rles)).astype(bool)


def _frame_instances(
    frame_annos: list[dict[str, Any]],
    tracks: dict[int, int],
    transforms: T.Transform,
    in_size: tuple[int, int],
    out_size: tuple[int, int],
) -> Instances:
    """Targets of one frame, one row per track of the clip (``tracks``: id -> class); a track
    not visible in the frame has an empty mask and ``gt_id`` -1."""
    rows = {track_id: row for row, track_id in enumerate(tracks)}
    masks = torch.zeros((len(tracks), *out_size), dtype=torch.bool)
    for anno in frame_annos:
        mask = segmentation_to_mask(anno["segmentation"], transforms, in_size, out_size)
        masks[rows[anno["id"]]] = torch.from_numpy(mask)
    ids = torch.tensor(list(tracks), dtype=torch.int64)
    instances = Instances(out_size)
    instances.gt_classes = torch.tensor(list(tracks.values()), dtype=torch.int64)
    instances.gt_ids = torch.where(masks.flatten(1).any(dim=1), ids, -1)
    instances.gt_masks = BitMasks(masks)
    instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
    return instances


class YTVISDatasetMapper:
    """Map a video dict of :func:`~minvis.data.ytvis.load_ytvis_json` to model input.

    Training: a sampled clip, augmented consistently, with per-frame :class:`Instances`
    (``gt_classes``, ``gt_ids``, ``gt_masks``, ``gt_boxes``), one row per non-crowd track of the
    clip, sorted by track id. Inference: all frames, resized, no targets.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: Sequence[T.Augmentation],
        image_format: str,
        sampling_frame_num: int = 2,
        sampling_frame_range: int = 20,
        sampling_frame_shuffle: bool = False,
        sampling_frame_ratio: float = 1.0,
    ) -> None:
        if image_format not in CHANNEL_ORDERS:
            raise ValueError(f"INPUT.FORMAT {image_format!r} is not supported; use one of {CHANNEL_ORDERS}")
        if is_train and sampling_frame_ratio < 1.0 and sampling_frame_num != 1:
            raise ValueError(
                "INPUT.SAMPLING_FRAME_RATIO < 1 supports only INPUT.SAMPLING_FRAME_NUM 1, "
                f"got {sampling_frame_num}."
            )
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.image_format = image_format
        self.sampling_frame_num = sampling_frame_num
        self.sampling_frame_range = sampling_frame_range
        self.sampling_frame_shuffle = sampling_frame_shuffle
        self.sampling_frame_ratio = sampling_frame_ratio
        mode = "training" if is_train else "inference"
        logger.info(f"[YTVISDatasetMapper] Augmentations used in {mode}: {self.augmentations}")

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> dict[str, Any]:
        frame_num, frame_range = training_clip_sampling(cfg)
        return {
            "is_train": is_train,
            "augmentations": build_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "sampling_frame_num": frame_num,
            "sampling_frame_range": frame_range,
            "sampling_frame_shuffle": cfg.INPUT.SAMPLING_FRAME_SHUFFLE,
            "sampling_frame_ratio": cfg.INPUT.SAMPLING_FRAME_RATIO,
        }

    def _read_frame(self, video: dict[str, Any], frame: int) -> np.ndarray:
        """The frame in ``INPUT.FORMAT``, decoded by the demo's reader; errors name the file."""
        try:
            image = read_image(video["file_names"][frame])
        except VideoReadError as error:
            raise VideoReadError(f"video {video['video_id']} frame {frame}: {error}") from None
        if image.shape[:2] != (video["height"], video["width"]):
            raise YTVISFormatError(
                f"video {video['video_id']} frame {frame} ({video['file_names'][frame]}): "
                f"image is {image.shape[1]}x{image.shape[0]} (WxH) but the annotation says "
                f"{video['width']}x{video['height']}."
            )
        return image[:, :, ::-1] if self.image_format == "BGR" else image

    def __call__(self, video: dict[str, Any]) -> dict[str, Any]:
        length = video["length"]
        if self.is_train:
            frames = sample_clip_frames(
                length,
                self.sampling_frame_num,
                self.sampling_frame_range,
                self.sampling_frame_ratio,
                self.sampling_frame_shuffle,
                random,
            )
        else:
            frames = list(range(length))
        images, transforms = augment_clip(self.augmentations, [self._read_frame(video, f) for f in frames])
        out = {
            "image": [image_to_tensor(im) for im in images],
            "file_names": [video["file_names"][f] for f in frames],
            "frame_indices": frames,
            "height": video["height"],
            "width": video["width"],
            "length": length,
            "video_id": video["video_id"],
        }
        if self.is_train:
            annos = [[a for a in video["annotations"][f] if not a.get("iscrowd", 0)] for f in frames]
            tracks = dict(sorted({a["id"]: a["category_id"] for fa in annos for a in fa}.items()))
            in_size = (video["height"], video["width"])
            out["instances"] = [
                _frame_instances(fa, tracks, tf, in_size, im.shape[:2])
                for fa, tf, im in zip(annos, transforms, images, strict=True)
            ]
        return out
