"""Per-frame alignment shared by the video-level and the online results.

:class:`FrameAligner` puts each frame's queries in track order with the tracker
(:class:`~minvis.tracking.QueryTracker`) and sums the aligned class logits per track;
:func:`class_probabilities` turns that sum into each track's class distribution.

With refused matches (``TrackingOptions.min_similarity``) there can be ``N > Q`` tracks
and a track may have no query on a frame: it adds nothing to its logit sum there, and its
class distribution is the softmax of its mean logits over the frames where it has a
query. With the default options every track has a query on every frame, so this is the
paper's mean over all frames.
"""

import torch
from torch import Tensor
from torch.nn import functional as F

from minvis.tracking import NO_QUERY, PAPER_TRACKING, QueryTracker, TrackingOptions

from .outputs import FrameOutputs

__all__ = ["FrameAligner", "class_probabilities"]


def class_probabilities(logit_sum: Tensor, num_frames: int | Tensor) -> Tensor:
    """``[N, K+1]`` logits summed over ``num_frames`` (a number, or ``[N]`` per track)
    -> ``[N, K]`` real-class probabilities."""
    if isinstance(num_frames, Tensor):
        num_frames = num_frames[:, None]  # [N, 1]
    return F.softmax(logit_sum / num_frames, dim=-1)[:, :-1]



class FrameAligner:
    """Validates one frame at a time, tracks it and sums its aligned logits.

    The shared core of :class:`~minvis.inference.video_result.VideoResultAccumulator` and
    :class:`~minvis.inference.online.OnlineTrackScorer`.
    """

    def __init__(self, tracking: TrackingOptions = PAPER_TRACKING) -> None:
        self.tracker = QueryTracker(tracking)
        self.logit_sum: Tensor | None = None  # [N, K+1], aligned logits summed over frames
        self.track_frames: Tensor | None = None  # [N] frames where each track had a query
        self.num_frames = 0
        self._shapes: tuple[torch.Size, torch.Size, torch.Size] | None = None

    def _check(self, frame: FrameOutputs) -> None:
        shapes = frame.shapes
        if self._shapes is not None and shapes != self._shapes:
            raise ValueError(
                f"frame {self.num_frames} has shapes (logits, masks, embds) "
                f"{[tuple(s) for s in shapes]}, earlier frames "
                f"{[tuple(s) for s in self._shapes]}; Q, K, C and the mask size must "
                "stay constant within a video"
            )
        self._shapes = shapes

    def add(self, frame: FrameOutputs) -> Tensor:
        """Align one frame; returns its ``perm [N]`` (query of each track, or ``NO_QUERY``)."""
        self._check(frame)
        logits = frame.logits
        perm = self.tracker.step(frame.embds, logits, frame.masks)
        present = perm != NO_QUERY  # [N]
        aligned_logits = logits[perm.clamp(min=0).to(logits.device)]  # [N, K+1]
        if not bool(present.all()):
            aligned_logits = torch.where(present.to(logits.device)[:, None], aligned_logits, 0.0)
        if self.logit_sum is None:
            self.logit_sum, self.track_frames = aligned_logits, present.long()
        else:
            new_tracks = len(perm) - len(self.track_frames)
            self.logit_sum = F.pad(self.logit_sum, (0, 0, 0, new_tracks)) + aligned_logits
            self.track_frames = F.pad(self.track_frames, (0, new_tracks)) + present.long()
        self.num_frames += 1
        return perm

    def probabilities(self) -> Tensor:
        """``[N, K]`` real-class probabilities of each track's mean aligned logits so far."""
        if self.logit_sum is None:
            raise ValueError("no frames were added to this video")
        return class_probabilities(self.logit_sum, self.track_frames.to(self.logit_sum.device))
