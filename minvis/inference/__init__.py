"""From per-frame image-model outputs to video results (pure torch, no detectron2).

* :mod:`.outputs` — the typed per-frame outputs (:class:`FrameOutputs`, a window of
  them: :class:`WindowOutputs`) and the :class:`MaskGeometry` that resizes their masks;
* :mod:`.video_result` — the paper's video-level result (:class:`VideoResult`) from
  frames added one at a time (:class:`VideoResultAccumulator`);
* :mod:`.online` — per-frame instances with stable track ids for streams
  (:class:`OnlineTrackScorer`).
"""

from .aligner import FrameAligner, class_probabilities
from .online import FrameInstances, OnlineTrackScorer
from .outputs import FrameOutputs, MaskGeometry, Size, WindowOutputs
from .video_result import TopKSelection, VideoResult, VideoResultAccumulator, select_top_k, track_queries

__all__ = [
    "FrameAligner",
    "FrameInstances",
    "FrameOutputs",
    "MaskGeometry",
    "OnlineTrackScorer",
    "Size",
    "TopKSelection",
    "VideoResult",
    "VideoResultAccumulator",
    "WindowOutputs",
    "class_probabilities",
    "select_top_k",
    "track_queries",
]
