"""Streaming MinVIS on decoded video frames: the model-level online API.

:class:`VideoPredictor` wraps a built model (like segment-anything's ``SamPredictor``;
:meth:`VideoPredictor.from_config` builds and loads one from a config). It takes frames
one at a time (RGB ``uint8 [H, W, 3]``, e.g. from
:func:`minvis.data.video_io.open_frame_source`), preprocesses each like the test dataset
mapper, runs the image model on it alone and tracks and scores its queries with
:class:`~minvis.inference.OnlineTrackScorer`. It yields one
:class:`~minvis.inference.FrameInstances` per frame as soon as the frame is processed:
stable track ids, class, running score and bool masks at the frame's original size.

Memory does not depend on the video length: a frame's tensors are dropped once its
instances are yielded; the scorer keeps one frame of embeddings and a running sum of
logits. Scores are running scores (see :mod:`minvis.inference.online`); the paper-exact
video-level result is ``model.track_video({"image": frames, ...})``, or
:meth:`VideoPredictor.video_result` for decoded frames fed one at a time.
"""

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.modeling import build_model
from torch import Tensor

from .data.preprocess import FramePreprocessor
from .inference import (
    FrameInstances,
    FrameOutputs,
    MaskGeometry,
    OnlineTrackScorer,
    Size,
    VideoResult,
    VideoResultAccumulator,
    WindowOutputs,
)
from .modeling import MinVISCheckpointer, VideoInputError, VideoMaskFormer_frame

__all__ = ["VideoPredictor"]


class VideoPredictor:
    """Online video instance segmentation of a stream of frames with a built model.

    Usage::

        predictor = VideoPredictor.from_config(cfg)  # loads cfg.MODEL.WEIGHTS (strict) if set
        for instances in predictor(open_frame_source("video.mp4")):
            instances.track_ids, instances.labels, instances.scores, instances.masks
    """

    def __init__(
        self,
        model: VideoMaskFormer_frame,
        preprocess: FramePreprocessor,
        *,
        class_names: Sequence[str] | None = None,
        category_ids: Sequence[int] | None = None,
        score_threshold: float = 0.5,
        amp: bool = False,
    ) -> None:
        """
        Args:
            model: a built MinVIS model (in eval mode while predicting); it runs on its device.
            preprocess: turns a decoded frame into the model's input (the test resize).
            class_names: name of each class (default: ``class i``).
            category_ids: dataset category id of each class, the submission's
                ``category_id`` (default: ``i + 1``).
            score_threshold: a track is reported on a frame when its running score is at
                least this and its mask there is non-empty.
            amp: run the image model under ``torch.autocast`` (float16) on CUDA; outputs
                are cast to float32 before tracking. Ignored on the CPU.
        """
        num_classes = model.sem_seg_head.num_classes
        self.model = model.eval()
        self.preprocess = preprocess
        self.class_names = list(class_names or (f"class {i}" for i in range(num_classes)))
        self.category_ids = list(category_ids or range(1, num_classes + 1))
        self.score_threshold = score_threshold
        self.amp = amp and self.model.device.type == "cuda"

    @classmethod
    def from_config(
        cls, cfg: CfgNode, *, score_threshold: float = 0.5, amp: bool = False
    ) -> "VideoPredictor":
        """Build the model of a full MinVIS config (:func:`minvis.config.build_config`) on
        ``MODEL.DEVICE``, load ``MODEL.WEIGHTS`` (strict) if set, and wrap it.

        Class names and category ids come from the metadata of the config's first test
        (or train) dataset with the model's number of classes.

        Raises:
            FileNotFoundError: ``MODEL.WEIGHTS`` names a missing file.
            minvis.modeling.CheckpointLoadError: the checkpoint is unreadable or does not
                fit the model built from ``cfg``.
        """
        model = build_model(cfg)
        if cfg.MODEL.WEIGHTS:
            MinVISCheckpointer(model, strict=True).load(cfg.MODEL.WEIGHTS)
        metadata = _class_metadata(cfg)
        id_map = None if metadata is None else metadata.get("thing_dataset_id_to_contiguous_id")
        return cls(
            model,
            FramePreprocessor(cfg),
            class_names=None if metadata is None else metadata.thing_classes,
            category_ids=None if id_map is None else sorted(id_map, key=id_map.__getitem__),
            score_threshold=score_threshold,
            amp=amp,
        )

    def __call__(self, frames: Iterable[np.ndarray]) -> Iterator[FrameInstances]:
        """Track the instances of one video, yielding each frame's as soon as it is done.

        Args:
            frames: RGB ``uint8 [H, W, 3]`` frames of one size, in order.
        """
        scorer: OnlineTrackScorer | None = None
        for outputs, geometry in self._frame_outputs(frames):
            if scorer is None:
                scorer = OnlineTrackScorer(
                    geometry, score_threshold=self.score_threshold, tracking=self.model.tracking
                )
            yield scorer.step(outputs)

    def video_result(self, frames: Iterable[np.ndarray]) -> VideoResult:
        """The paper-exact video-level result of one video (the model's ``top_k``
        instances with video-level class and score, as ``model.track_video`` with one
        frame per window), from frames fed one at a time.

        Keeps what the paper's result needs until the last frame: per frame the ``[Q, h,
        w]`` mask logits (on disk with ``MODEL.MASK_FORMER.TEST.SPILL_MASKS_TO_DISK``) and
        the track permutation; the result computes each frame's masks when iterated.

        Args:
            frames: RGB ``uint8 [H, W, 3]`` frames of one size, in order.
        """
        accumulator: VideoResultAccumulator | None = None
        for outputs, geometry in self._frame_outputs(frames):
            if accumulator is None:
                accumulator = VideoResultAccumulator(
                    geometry,
                    top_k=self.model.top_k,
                    spill_to_disk=self.model.spill_masks_to_disk,
                    tracking=self.model.tracking,
                )
            accumulator.add_frame(outputs)
        if accumulator is None:
            raise VideoInputError("the video has no frames")
        return accumulator.finalize()

    def _frame_outputs(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[FrameOutputs, MaskGeometry]]:
        """Check, preprocess and run each RGB ``uint8 [H, W, 3]`` frame; yield its outputs
        and the geometry from the model's mask grid to the frame's original size."""
        first_size: Size | None = None
        for index, frame in enumerate(frames):
            _check_frame(frame, index, first_size)
            first_size = first_size or frame.shape[:2]
            outputs, window = self.run_model(self.preprocess(frame))  # preprocess: uint8 [3, h, w]
            yield outputs, window.geometry(first_size)

    @torch.no_grad()
    def run_model(self, image: Tensor) -> tuple[FrameOutputs, WindowOutputs]:
        """Outputs of one ``[3, h, w]`` model-input frame, as float32 on the model's device.

        Returns:
            The frame's :class:`~minvis.inference.FrameOutputs` and the one-frame
            :class:`~minvis.inference.WindowOutputs` it comes from (with the input sizes).
        """
        with torch.autocast(self.model.device.type, dtype=torch.float16, enabled=self.amp):
            window = next(self.model.frame_outputs([image]))
        (outputs,) = window.frames()
        return outputs.float(), window


def _class_metadata(cfg: CfgNode) -> Metadata | None:
    """Metadata of the config's first test (or train) dataset with the model's classes."""
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    for name in (*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN):
        metadata = MetadataCatalog.get(name)
        if len(metadata.get("thing_classes", ())) == num_classes:
            return metadata
    return None


def _check_frame(frame: object, index: int, size: tuple[int, int] | None) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise VideoInputError(f"frame {index}: expected an RGB uint8 [H, W, 3] array, got {what}")
    if size is not None and frame.shape[:2] != size:
        raise VideoInputError(
            f"frame {index} has size {frame.shape[:2]} but frame 0 has {size}: "
            "all frames of a video must have one size"
        )
