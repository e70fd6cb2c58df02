"""Video-level results from per-frame image-model outputs, tracked by query matching.

:class:`VideoResultAccumulator` gives the paper's (and the official release's) video
output from frames added one at a time (:class:`~minvis.inference.outputs.FrameOutputs`),
aligned online by :class:`~minvis.inference.aligner.FrameAligner`. Scores are
``softmax(mean over frames of the aligned logits)`` without the no-object column; the
``top_k`` best (track, class) pairs are kept (``topk(sorted=False)`` order, like the
official code); their mask logits are resized to the padded input size, cropped to the
unpadded image size, resized to the output size and thresholded at 0
(:class:`~minvis.inference.outputs.MaskGeometry`).

Accelerator memory stays bounded: only the aligned low-resolution mask logits are kept,
on the CPU (or on disk), and the result (:class:`VideoResult`) resizes masks frame by
frame when asked, so neither ``T x Q`` upsampled masks nor ``T x H x W`` masks of all
instances need to exist at once unless its user wants dense masks (:meth:`VideoResult.to_dict`).

Shapes here: ``Q`` queries, ``N`` tracks (``Q`` by default), ``K`` classes, ``(h, w)``
mask logit size, ``(H, W)`` output size, ``T`` frames, ``k`` selected instances.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from minvis.tracking import NO_QUERY, PAPER_TRACKING, TrackingOptions

from .aligner import FrameAligner
from .disk_tensors import DiskTensorList
from .online import FrameInstances
from .outputs import FrameOutputs, MaskGeometry, Size

__all__ = ["TopKSelection", "VideoResult", "VideoResultAccumulator", "select_top_k", "track_queries"]


@dataclass(frozen=True)
class VideoResult:
    """One video's instances: ``k`` (track, class) pairs and their masks on every frame.

    What the model's :meth:`~minvis.modeling.VideoMaskFormer_frame.track_video` returns;
    its user decides how to store the masks: :meth:`to_dict` is the official eval-mode
    dict with dense masks, :meth:`frame_masks` streams them one frame at a time (the
    evaluator encodes each frame to RLE, so memory stays bounded on long videos).

    Attributes:
        image_size: ``(height, width)`` of the masks (the original video size).
        scores: ``k`` class probabilities.
        labels: ``k`` 0-based class ids.
        num_frames: ``T``.
        mask_frames: returns a fresh iterator over the ``T`` frames' bool
            ``[k, height, width]`` CPU masks, in instance order.
    """

    image_size: Size
    scores: list[float]
    labels: list[int]
    num_frames: int
    mask_frames: Callable[[], Iterator[Tensor]]

    def frame_masks(self) -> Iterator[Tensor]:
        """Yield each frame's bool ``[k, height, width]`` masks, in order."""
        return self.mask_frames()

    def frame_instances(self) -> Iterator[FrameInstances]:
        """Each frame's instances in the streaming predictor's form, frame by frame: the
        result's instance ``i`` is track ``i`` on every frame, with its video-level label
        and score; all ``k`` instances on every frame (a mask may be empty)."""
        tracks = torch.arange(len(self.scores))  # [k]
        labels = torch.tensor(self.labels, dtype=torch.long)  # [k]
        scores = torch.tensor(self.scores, dtype=torch.float32)  # [k]
        for t, masks in enumerate(self.frame_masks()):  # [k, height, width]
            yield FrameInstances(t, tracks, labels, scores, masks, permutation=tracks)

    def instance_masks(self) -> list[Tensor]:
        """Per instance, its bool ``[T, height, width]`` masks (all in memory at once)."""
        masks = torch.empty((len(self.scores), self.num_frames, *self.image_size), dtype=torch.bool)
        for t, frame in enumerate(self.frame_masks()):
            masks[:, t] = frame
        return list(masks.unbind(0))

    def to_dict(self) -> dict[str, Any]:
        """The official eval-mode output.

        Returns:
            ``{"image_size": (height, width), "pred_scores": list[float] (k),
            "pred_labels": list[int] (k), "pred_masks": list of k bool CPU tensors
            [T, height, width]}``; all lists are empty when no instance is kept.
        """
        return {
            "image_size": self.image_size,
            "pred_scores": self.scores,
            "pred_labels": self.labels,
            "pred_masks": self.instance_masks(),
        }


@dataclass(frozen=True)
class TopKSelection:
    """The video-level instances kept: ``k`` (track, class) pairs.

    Attributes:
        scores: ``[k]`` class probabilities.
        labels: ``[k]`` 0-based class ids.
        tracks: ``[k]`` track (aligned query slot) of each instance.
    """

    scores: Tensor
    labels: Tensor
    tracks: Tensor


def track_queries(perm: Tensor, tracks: Tensor) -> Tensor:
    """The query of each of ``tracks [k]`` in a frame's ``perm [N_t]`` (``NO_QUERY`` where
    none, also for tracks started after that frame). CPU tensors."""
    known = tracks < len(perm)  # [k]
    queries = torch.full_like(tracks, NO_QUERY)
    queries[known] = perm[tracks[known]]
    return queries


def _check_top_k(top_k: int) -> None:
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")


def select_top_k(probabilities: Tensor, top_k: int) -> TopKSelection:
    """Keep the ``top_k`` best (track, class) pairs of ``[Q, K]`` probabilities.

    Ranks all ``Q * K`` pairs (``top_k`` is capped at that number) and returns them in
    ``topk(sorted=False)`` order, as the official release does.
    """
    _check_top_k(top_k)
    num_classes = probabilities.shape[1]
    k = min(top_k, probabilities.numel())
    scores, flat_index = probabilities.flatten().topk(k, sorted=False)  # [k], [k]
    return TopKSelection(
        scores=scores, labels=flat_index % num_classes, tracks=flat_index // num_classes
    )



class VideoResultAccumulator:
    """Paper-exact video results from frames added one at a time (with the default ``tracking``).

    Per frame only the ``[Q, h, w]`` mask logits, unchanged in value, and the frame's
    permutation into track order are kept, the logits on ``storage_device`` (the CPU by
    default) or, with ``spill_to_disk``, in a temporary file: ``T * Q * h * w * 4`` bytes
    for ``T`` frames, which the paper-exact result needs because the top-k tracks are
    known only after the last frame. On disk they leave memory flat however long the
    video. The selected instances' masks are resized on the device the frames came from,
    one frame at a time.

    Usage::

        acc = VideoResultAccumulator(geometry, top_k=10)
        for frame in frames:  # FrameOutputs
            acc.add_frame(frame)
        result = acc.finalize()  # VideoResult; result.to_dict(): official eval-mode dict
    """

    def __init__(
        self,
        geometry: MaskGeometry,
        *,
        top_k: int = 10,
        storage_device: torch.device | str = "cpu",
        spill_to_disk: bool = False,
        tracking: TrackingOptions = PAPER_TRACKING,
    ) -> None:
        _check_top_k(top_k)  # fail before the video is processed, not after
        self.geometry = geometry
        self.top_k = top_k
        self._storage_device = torch.device(storage_device)
        self._compute_device: torch.device | None = None
        self._aligner = FrameAligner(tracking)
        # Per frame [Q, h, w] as the model output them, on storage_device (or on disk).
        self._masks: list[Tensor] | DiskTensorList = DiskTensorList() if spill_to_disk else []
        self._perms: list[Tensor] = []  # per frame [N_t], CPU: the query of each track

    @property
    def num_frames(self) -> int:
        return self._aligner.num_frames

    def add_frame(self, frame: FrameOutputs) -> Tensor:
        """Add one frame's outputs.

        Returns the frame's permutation ``[N]`` into track order (see ``QueryTracker.step``).
        """
        perm = self._aligner.add(frame)
        self._compute_device = frame.masks.device
        self._masks.append(frame.masks.to(self._storage_device))
        self._perms.append(perm)
        return perm

    def selection(self) -> TopKSelection:
        """The ``top_k`` (track, class) pairs over the whole video."""
        return select_top_k(self._aligner.probabilities(), self.top_k)

    def iter_frame_masks(self, tracks: Tensor) -> Iterator[Tensor]:
        """Yield, per frame, the bool ``[k, height, width]`` masks (CPU) of ``tracks [k]``."""
        tracks = tracks.cpu()
        for frame_masks, perm in zip(self._masks, self._perms, strict=True):
            queries = track_queries(perm, tracks)  # [k]
            yield self.geometry.track_masks(frame_masks, queries, self._compute_device).cpu()

    def finalize(self) -> "VideoResult":
        """The video-level result: the ``top_k`` (track, class) pairs and their masks.

        Masks are computed when the result's users ask for them, one frame at a time.
        """
        selection = self.selection()
        return VideoResult(
            image_size=self.geometry.output_size,
            scores=selection.scores.tolist(),
            labels=selection.labels.tolist(),
            num_frames=self.num_frames,
            mask_frames=lambda: self.iter_frame_masks(selection.tracks),
        )
