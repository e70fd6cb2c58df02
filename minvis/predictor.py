"""MinVIS on decoded video frames: a thin wrapper of a built model, like segment-anything's
``SamPredictor``.

:class:`VideoPredictor` checks and preprocesses RGB ``uint8 [H, W, 3]`` frames (e.g. from
:func:`minvis.data.video_io.open_frame_source`) as the test dataset mapper does, and
hands them to the model's two inference methods: ``predictor(frames)`` streams each
frame's tracks with running scores (``model.track_stream``), ``predictor.track_video(
frames)`` returns the paper's video-level result (``model.track_video``). Masks come at
the frames' original size; precision and speed-ups are the model's.
"""

import itertools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.modeling import build_model
from torch import Tensor

from .data.preprocess import FramePreprocessor
from .modeling import MinVISCheckpointer, VideoInputError, VideoMaskFormer_frame
from .modeling.exported import build_exported_model, is_exported
from .modeling.speedups import apply_speedups
from .tracking import FrameInstances, Size, VideoResult


class VideoPredictor:
    """``predictor = VideoPredictor.from_config(cfg)``, then ``for instances in
    predictor(open_frame_source("video.mp4")): instances.track_ids, .labels, .scores, .masks``."""

    def __init__(
        self,
        model: VideoMaskFormer_frame,
        preprocess: FramePreprocessor,
        *,
        class_names: Sequence[str] | None = None,
        category_ids: Sequence[int] | None = None,
        score_threshold: float = 0.5,
    ) -> None:
        """``model`` runs on its device, in eval mode, with the speed-ups; ``category_ids``
        are the submission's ``category_id`` of each class (default ``i + 1``);
        ``score_threshold``: the least running score of a streamed track."""
        num_classes = model.sem_seg_head.num_classes
        self.model = apply_speedups(model.eval())
        self.preprocess = preprocess
        self.class_names = list(class_names or (f"class {i}" for i in range(num_classes)))
        self.category_ids = list(category_ids or range(1, num_classes + 1))
        self.score_threshold = score_threshold

    @classmethod
    def from_config(cls, cfg: CfgNode, *, score_threshold: float = 0.5) -> "VideoPredictor":
        """Build the model of a full config on ``MODEL.DEVICE`` and load ``MODEL.WEIGHTS``
        (strict) if set, or, for an exported ``model.onnx``, run that in ONNX Runtime on the CPU
        (:mod:`minvis.modeling.exported`); class names and category ids come from the config's
        first test (or train) dataset with the model's number of classes. Raises
        FileNotFoundError or :class:`~minvis.modeling.CheckpointLoadError` naming the weights file."""
        if is_exported(cfg.MODEL.WEIGHTS):
            model = build_exported_model(cfg)
        else:
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
        )

    def __call__(self, frames: Iterable[np.ndarray]) -> Iterator[FrameInstances]:
        """Each frame's tracks as soon as it is processed; RGB ``uint8 [H, W, 3]`` frames
        of one size, in order. Memory does not grow with the video."""
        size, inputs = self._inputs(frames)
        yield from self.model.track_stream(inputs, size, self.score_threshold)

    def track_video(self, frames: Iterable[np.ndarray]) -> VideoResult:
        """The paper-exact result of one video: the model's ``top_k`` instances with
        video-level class and score (masks computed per frame when the result is read)."""
        size, inputs = self._inputs(frames)
        return self.model.track_video({"image": inputs, "height": size[0], "width": size[1]})

    def _inputs(self, frames: Iterable[np.ndarray]) -> tuple[Size, Iterator[Tensor]]:
        """The original size (of frame 0) and the checked, preprocessed frames, lazily."""
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            raise VideoInputError("the video has no frames")
        _check_frame(first, 0, None)
        size = first.shape[:2]

        def inputs() -> Iterator[Tensor]:
            for index, frame in enumerate(itertools.chain([first], frames)):
                _check_frame(frame, index, size)
                yield self.preprocess(frame)  # uint8 [3, h, w]

        return size, inputs()


def _class_metadata(cfg: CfgNode) -> Metadata | None:
    """Metadata of the config's first test (or train) dataset with the model's classes."""
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    for name in (*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN):
        metadata = MetadataCatalog.get(name)
        if len(metadata.get("thing_classes", ())) == num_classes:
            return metadata
    return None


def _check_frame(frame: object, index: int, size: Size | None) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise VideoInputError(f"frame {index}: expected an RGB uint8 [H, W, 3] array, got {what}")
    if size is not None and frame.shape[:2] != size:
        raise VideoInputError(
            f"frame {index} has size {frame.shape[:2]} but frame 0 has {size}: "
            "all frames of a video must have one size"
        )
