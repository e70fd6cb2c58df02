"""Streaming MinVIS on decoded video frames: the model-level online API.

:class:`VideoPredictor` builds the model from a config (and its ``MODEL.WEIGHTS``),
takes frames one at a time (RGB ``uint8 [H, W, 3]``, e.g. from
:func:`minvis.data.video_io.open_frame_source`), preprocesses each like the test
dataset mapper, runs the image model on it alone and tracks its queries with
:class:`~minvis.inference.StreamingVideoPredictor`. It yields one
:class:`~minvis.inference.FrameInstances` per frame as soon as the frame is processed:
stable track ids, class, running score and bool masks at the frame's original size.

Memory does not depend on the video length: a frame's tensors are dropped once its
instances are yielded; the tracker keeps one frame of embeddings and a running sum of
logits. Scores are running scores (see :mod:`minvis.inference`); the paper-exact
video-level result is ``model([{"image": frames, ...}])``.
"""

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.modeling import build_model
from torch import Tensor

from .checkpoint import MinVISCheckpointer
from .data.preprocess import FramePreprocessor
from .inference import FrameInstances, StreamingVideoPredictor
from .video_model import RAW_OUTPUT_KEYS, VideoInputError, VideoMaskFormer_frame

__all__ = ["VideoPredictor"]

class VideoPredictor:
    """Online video instance segmentation of a stream of frames.

    Usage::

        predictor = VideoPredictor(cfg)  # loads cfg.MODEL.WEIGHTS (strict) if set
        for instances in predictor(open_frame_source("video.mp4")):
            instances.track_ids, instances.labels, instances.scores, instances.masks
    """

    def __init__(self, cfg: CfgNode, *, score_threshold: float = 0.5, amp: bool = False) -> None:
        """
        Args:
            cfg: a full MinVIS config (:func:`minvis.setup_config.build_config`); the model
                runs on ``MODEL.DEVICE``.
            score_threshold: a track is reported on a frame when its running score is at
                least this and its mask there is non-empty.
            amp: run the image model under ``torch.autocast`` (float16) on CUDA; outputs
                are cast to float32 before tracking. Ignored on the CPU.

        Raises:
            FileNotFoundError: ``MODEL.WEIGHTS`` names a missing file.
            minvis.checkpoint.CheckpointLoadError: the checkpoint is unreadable or does not
                fit the model built from ``cfg``.
        """
        self.cfg = cfg.clone()
        self.model: VideoMaskFormer_frame = build_model(self.cfg).eval()
        if self.cfg.MODEL.WEIGHTS:
            MinVISCheckpointer(self.model, strict=True).load(self.cfg.MODEL.WEIGHTS)
        self.preprocess = FramePreprocessor(self.cfg)
        self.score_threshold = score_threshold
        self.amp = amp and self.model.device.type == "cuda"

    def _class_metadata(self) -> Metadata | None:
        """Metadata of the config's first test (or train) dataset with the model's classes."""
        num_classes = self.cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        for name in (*self.cfg.DATASETS.TEST, *self.cfg.DATASETS.TRAIN):
            metadata = MetadataCatalog.get(name)
            if len(metadata.get("thing_classes", ())) == num_classes:
                return metadata
        return None

    @property
    def class_names(self) -> list[str]:
        """Name of each class (``thing_classes`` of the config's datasets, else ``class i``)."""
        metadata = self._class_metadata()
        if metadata is None:
            return [f"class {i}" for i in range(self.cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)]
        return list(metadata.thing_classes)

    @property
    def category_ids(self) -> list[int]:
        """Dataset category id of each class (the submission's ``category_id``; else ``i + 1``)."""
        metadata = self._class_metadata()
        id_map = None if metadata is None else metadata.get("thing_dataset_id_to_contiguous_id")
        if id_map is None:
            return list(range(1, self.cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES + 1))
        return [dataset_id for dataset_id, _ in sorted(id_map.items(), key=lambda item: item[1])]

    def __call__(self, frames: Iterable[np.ndarray]) -> Iterator[FrameInstances]:
        """Track the instances of one video, yielding each frame's as soon as it is done.

        Args:
            frames: RGB ``uint8 [H, W, 3]`` frames of one size, in order.
        """
        tracker: StreamingVideoPredictor | None = None
        first_size: tuple[int, int] | None = None
        for index, frame in enumerate(frames):
            _check_frame(frame, index, first_size)
            first_size = first_size or frame.shape[:2]
            image = self.preprocess(frame)  # uint8 [3, h, w]
            (logits, masks, embds), padded_size = self.run_model(image)
            if tracker is None:
                tracker = StreamingVideoPredictor(
                    image_size=tuple(image.shape[-2:]),
                    padded_size=padded_size,
                    output_size=first_size,
                    score_threshold=self.score_threshold,
                    tracking=self.model.tracking,
                )
            yield tracker.step(logits, masks, embds)

    @torch.no_grad()
    def run_model(self, image: Tensor) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[int, int]]:
        """Raw outputs of one ``[3, h, w]`` model-input frame, as float32 on the model's device.

        Returns:
            ``(logits [Q, K+1], mask logits [Q, H_pad/4, W_pad/4], embds [Q, C])`` and the
            padded input size ``(H_pad, W_pad)``.
        """
        device_type = self.model.device.type
        with torch.autocast(device_type, dtype=torch.float16, enabled=self.amp):
            raw, padded_size = next(self.model.frame_outputs([image]))
        logits, masks, embds = (raw[key][0].float() for key in RAW_OUTPUT_KEYS)
        return (logits, masks, embds), padded_size


def _check_frame(frame: object, index: int, size: tuple[int, int] | None) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise VideoInputError(f"frame {index}: expected an RGB uint8 [H, W, 3] array, got {what}")
    if size is not None and frame.shape[:2] != size:
        raise VideoInputError(
            f"frame {index} has size {frame.shape[:2]} but frame 0 has {size}: "
            "all frames of a video must have one size"
        )
