"""Online results: per-frame instances with stable track ids, for streams.

:class:`OnlineTrackScorer` aligns each frame as it comes
(:class:`~minvis.inference.aligner.FrameAligner`) and reports the frame's instances at
once. Memory does not grow with the video (with the default tracking options): it keeps
the previous frame's aligned embeddings and the running sum of aligned logits.

**Scoring differs from the paper path** (:mod:`minvis.inference.video_result`): at
frame ``t`` a track's class distribution is ``softmax(mean of its logits over frames
0..t)`` (a running mean of *logits*, then softmax, the paper's aggregation restricted to
the frames seen so far), its label the argmax over real classes and its score that
maximum. The paper path instead averages over the whole video and ranks (track, class)
pairs, so a track can appear there under several classes. On the last frame a track's
running distribution equals its whole-video one. Tracks (the per-frame permutations) are
identical to the paper path.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from minvis.tracking import NO_QUERY, PAPER_TRACKING, TrackingOptions

from .aligner import FrameAligner
from .outputs import FrameOutputs, MaskGeometry

__all__ = ["FrameInstances", "OnlineTrackScorer"]


@dataclass(frozen=True)
class FrameInstances:
    """Instances of one frame from :class:`OnlineTrackScorer` (CPU tensors).

    Attributes:
        frame_index: 0-based index of the frame in the stream.
        track_ids: ``[N]`` stable track ids (aligned query slots).
        labels: ``[N]`` class ids (argmax of the running class distribution).
        scores: ``[N]`` running scores (probability of that class).
        masks: ``[N, height, width]`` bool masks, all non-empty.
        permutation: this frame's permutation into track order, ``[Q]`` with the default
            tracking options (``[N_tracks]`` with ``NO_QUERY`` entries when matches can be
            refused, see :class:`~minvis.tracking.TrackingOptions`).
    """

    frame_index: int
    track_ids: Tensor
    labels: Tensor
    scores: Tensor
    masks: Tensor
    permutation: Tensor


class OnlineTrackScorer:
    """Tracks and scores a video's frames online: per-frame instances with stable track ids.

    Runs no model: it consumes the image model's outputs frame by frame. A track is
    reported on a frame when its running score is ``>= score_threshold`` and its mask on
    that frame is non-empty. See the module docstring for how the running score differs
    from the paper-exact video score. Memory is independent of ``T``.
    """

    def __init__(
        self,
        geometry: MaskGeometry,
        *,
        score_threshold: float = 0.5,
        tracking: TrackingOptions = PAPER_TRACKING,
    ) -> None:
        self.geometry = geometry
        self.score_threshold = score_threshold
        self._aligner = FrameAligner(tracking)

    def step(self, frame: FrameOutputs) -> FrameInstances:
        """Consume one frame's outputs."""
        frame_index = self._aligner.num_frames
        perm = self._aligner.add(frame)
        masks = frame.masks
        scores, labels = self._aligner.probabilities().max(dim=1)  # [N], [N]
        tracks = torch.nonzero((scores >= self.score_threshold).cpu() & (perm != NO_QUERY)).flatten()  # [n]
        binary = self.geometry.track_masks(masks, perm[tracks], masks.device)  # [n, height, width]
        visible = binary.flatten(1).any(dim=1)  # [n]
        tracks = tracks[visible]  # [N]
        return FrameInstances(
            frame_index=frame_index,
            track_ids=tracks.cpu(),
            labels=labels[tracks].cpu(),
            scores=scores[tracks].cpu(),
            masks=binary[visible].cpu(),
            permutation=perm,
        )
