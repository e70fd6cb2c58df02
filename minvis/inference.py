"""Video-level results from per-frame image-model outputs, tracked by query matching.

Per frame ``t`` the image model gives ``logits [Q, K+1]`` (class logits, last = no
object), ``masks [Q, h, w]`` (mask logits at 1/4 of the padded input size) and
``embds [Q, C]`` (query embeddings). :class:`~minvis.tracker.QueryTracker` puts every
frame's queries in track order; everything below works on aligned outputs.

Non-default :class:`~minvis.tracker.TrackingOptions` (``tracking=``) change only how
queries are assigned to tracks. With refused matches (``min_similarity``) there can be
``N > Q`` tracks and a track may have no query on a frame: its mask there is empty, it
adds nothing to its logit sum, and its class distribution is the softmax of its mean
logits over the frames where it has a query. With the default options every track has a
query on every frame, so this is the paper's mean over all frames.

Three ways to consume them, sharing one implementation of every step (shape checks,
alignment, logit averaging, top-k selection, mask resizing):

* :func:`paper_exact_video_results` — the paper's (and official release's) video output
  from stacked ``[T, ...]`` tensors. Scores are ``softmax(mean over frames of the aligned
  logits)`` without the no-object column; the ``top_k`` best (track, class) pairs are kept
  (``topk(sorted=False)`` order, like the official code); their mask logits are resized
  to the padded input size, cropped to the unpadded image size, resized to the output
  size and thresholded at 0.
* :class:`VideoResultAccumulator` — the same results with bounded accelerator memory:
  frames are added one at a time, aligned online, and only the aligned low-resolution
  mask logits are kept, on the CPU. Masks are then resized frame by frame, so neither
  ``T x Q`` upsampled masks nor ``T x H x W`` masks of all instances need to exist at once
  (:meth:`VideoResultAccumulator.iter_frame_masks`,
  :meth:`VideoResultAccumulator.finalize_encoded`).
* :class:`StreamingVideoPredictor` — per-frame instances with stable track ids (the
  aligned query slot), for online use. Memory does not grow with the video (with the
  default tracking options): it keeps the previous frame's aligned embeddings and the
  running sum of aligned logits.
  **Scoring differs from the paper path**: at frame ``t`` a track's class distribution is
  ``softmax(mean of its logits over frames 0..t)`` (a running mean of *logits*, then
  softmax, the paper's aggregation restricted to the frames seen so far), its label the
  argmax over real classes and its score that maximum. The paper path instead averages
  over the whole video and ranks (track, class) pairs, so a track can appear there under
  several classes. On the last frame a track's running distribution equals its
  whole-video one. Tracks (the per-frame permutations) are identical to the paper path.

Shapes here: ``Q`` queries, ``N`` tracks (``Q`` by default), ``K`` classes, ``C``
embedding channels, ``(h, w)`` mask logit size, ``(H, W)`` output size, ``k`` selected
instances.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.nn import functional as F

from minvis.disk_tensors import DiskTensorList
from minvis.tracker import NO_QUERY, PAPER_TRACKING, QueryTracker, TrackingOptions

Size = tuple[int, int]
Encoded = TypeVar("Encoded")


@dataclass(frozen=True)
class MaskGeometry:
    """Sizes that take mask logits from the model's grid to the output frame.

    Attributes:
        image_size: ``(h_img, w_img)`` of the frame fed to the model, without padding.
        padded_size: ``(H_pad, W_pad)`` of the padded model input.
        output_size: ``(height, width)`` the results are reported at (original video size).
    """

    image_size: Size
    padded_size: Size
    output_size: Size

    def __post_init__(self) -> None:
        sizes = (*self.image_size, *self.padded_size, *self.output_size)
        if min(sizes) <= 0:
            raise ValueError(f"sizes must be positive, got {self}")
        if self.image_size[0] > self.padded_size[0] or self.image_size[1] > self.padded_size[1]:
            raise ValueError(f"image_size {self.image_size} exceeds padded_size {self.padded_size}")

    def mask_logits_to_output(self, mask_logits: Tensor) -> Tensor:
        """Resize ``[N, h, w]`` mask logits to ``[N, height, width]`` output logits."""
        if mask_logits.shape[0] == 0:  # interpolate rejects empty inputs
            return mask_logits.new_zeros((0, *self.output_size))
        x = F.interpolate(
            mask_logits[None], size=self.padded_size, mode="bilinear", align_corners=False
        )  # [1, N, H_pad, W_pad]
        x = x[:, :, : self.image_size[0], : self.image_size[1]]  # [1, N, h_img, w_img]
        x = F.interpolate(x, size=self.output_size, mode="bilinear", align_corners=False)
        return x[0]  # [N, height, width]

    def binary_masks(self, mask_logits: Tensor) -> Tensor:
        """``[N, h, w]`` mask logits -> ``[N, height, width]`` bool masks (logit > 0)."""
        return self.mask_logits_to_output(mask_logits) > 0

    def track_masks(self, masks: Tensor, queries: Tensor, device: torch.device) -> Tensor:
        """Bool ``[k, height, width]`` masks, on ``device``, of the ``queries [k]`` of one
        frame's ``[Q, h, w]`` mask logits (resized on ``device``); empty where ``NO_QUERY``."""
        present = queries != NO_QUERY  # [k]
        selected = masks[queries[present].to(masks.device)].to(device)  # [m, h, w]
        if bool(present.all()):
            return self.binary_masks(selected)
        out = torch.zeros((len(queries), *self.output_size), dtype=torch.bool, device=device)
        out[present.to(device)] = self.binary_masks(selected)
        return out


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


def class_probabilities(logit_sum: Tensor, num_frames: int | Tensor) -> Tensor:
    """``[N, K+1]`` logits summed over ``num_frames`` (a number, or ``[N]`` per track)
    -> ``[N, K]`` real-class probabilities."""
    if isinstance(num_frames, Tensor):
        num_frames = num_frames[:, None]  # [N, 1]
    return F.softmax(logit_sum / num_frames, dim=-1)[:, :-1]


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


class _FrameAligner:
    """Validates one frame at a time, tracks it and sums its aligned logits.

    The shared core of the accumulator and the streaming predictor.
    """

    def __init__(self, tracking: TrackingOptions = PAPER_TRACKING) -> None:
        self.tracker = QueryTracker(tracking)
        self.logit_sum: Tensor | None = None  # [N, K+1], aligned logits summed over frames
        self.track_frames: Tensor | None = None  # [N] frames where each track had a query
        self.num_frames = 0
        self._shapes: tuple[torch.Size, torch.Size, torch.Size] | None = None

    def _check(self, logits: Tensor, masks: Tensor, embds: Tensor) -> None:
        if logits.dim() != 2 or masks.dim() != 3 or embds.dim() != 2:
            raise ValueError(
                "expected logits [Q, K+1], masks [Q, h, w], embds [Q, C]; got shapes "
                f"{tuple(logits.shape)}, {tuple(masks.shape)}, {tuple(embds.shape)}"
            )
        if not logits.shape[0] == masks.shape[0] == embds.shape[0]:
            raise ValueError(
                f"inconsistent number of queries in one frame: logits {logits.shape[0]}, "
                f"masks {masks.shape[0]}, embds {embds.shape[0]}"
            )
        if logits.shape[1] < 2:
            raise ValueError(f"logits need >= 1 class plus no-object, got {logits.shape[1]}")
        shapes = (logits.shape, masks.shape, embds.shape)
        if self._shapes is not None and shapes != self._shapes:
            raise ValueError(
                f"frame {self.num_frames} has shapes (logits, masks, embds) "
                f"{[tuple(s) for s in shapes]}, earlier frames "
                f"{[tuple(s) for s in self._shapes]}; Q, K, C and the mask size must "
                "stay constant within a video"
            )
        self._shapes = shapes

    def add(self, logits: Tensor, masks: Tensor, embds: Tensor) -> Tensor:
        """Align one frame; returns its ``perm [N]`` (query of each track, or ``NO_QUERY``)."""
        self._check(logits, masks, embds)
        perm = self.tracker.step(embds, logits, masks)
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

        acc = VideoResultAccumulator(image_size=..., padded_size=..., output_size=..., top_k=10)
        for logits, masks, embds in frames:  # [Q, K+1], [Q, h, w], [Q, C]
            acc.add_frame(logits, masks, embds)
        result = acc.finalize()  # official eval-mode dict
    """

    def __init__(
        self,
        *,
        image_size: Size,
        padded_size: Size,
        output_size: Size,
        top_k: int = 10,
        storage_device: torch.device | str = "cpu",
        spill_to_disk: bool = False,
        tracking: TrackingOptions = PAPER_TRACKING,
    ) -> None:
        _check_top_k(top_k)  # fail before the video is processed, not after
        self.geometry = MaskGeometry(image_size, padded_size, output_size)
        self.top_k = top_k
        self._storage_device = torch.device(storage_device)
        self._compute_device: torch.device | None = None
        self._aligner = _FrameAligner(tracking)
        # Per frame [Q, h, w] as the model output them, on storage_device (or on disk).
        self._masks: list[Tensor] | DiskTensorList = DiskTensorList() if spill_to_disk else []
        self._perms: list[Tensor] = []  # per frame [N_t], CPU: the query of each track

    @property
    def num_frames(self) -> int:
        return self._aligner.num_frames

    def add_frame(self, logits: Tensor, masks: Tensor, embds: Tensor) -> Tensor:
        """Add one frame's raw outputs ``[Q, K+1]``, ``[Q, h, w]``, ``[Q, C]``.

        Returns the frame's permutation ``[N]`` into track order (see ``QueryTracker.step``).
        """
        perm = self._aligner.add(logits, masks, embds)
        self._compute_device = masks.device
        self._masks.append(masks.to(self._storage_device))
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

    def finalize(self) -> dict[str, Any]:
        """The video result in the official eval-mode format.

        Returns:
            ``{"image_size": (height, width), "pred_scores": list[float] (k),
            "pred_labels": list[int] (k), "pred_masks": list of k bool CPU tensors
            [T, height, width]}``; all lists are empty when ``top_k`` is 0.
        """
        selection = self.selection()
        height, width = self.geometry.output_size
        k = len(selection.tracks)
        masks = torch.empty((k, self.num_frames, height, width), dtype=torch.bool)
        for t, frame in enumerate(self.iter_frame_masks(selection.tracks)):
            masks[:, t] = frame
        return {**self._summary(selection), "pred_masks": list(masks.unbind(0))}

    def finalize_encoded(
        self, encode_frame: Callable[[Tensor], Sequence[Encoded]]
    ) -> dict[str, Any]:
        """Like :meth:`finalize`, but masks are encoded frame by frame (e.g. to RLE).

        Args:
            encode_frame: maps one frame's bool ``[k, height, width]`` CPU masks to ``k``
                encodings (e.g. compressed RLE dicts), in instance order.

        Returns:
            The :meth:`finalize` dict with ``"pred_masks"`` replaced by
            ``"pred_segmentations"``: per instance, the list of its ``T`` frame encodings.
        """
        selection = self.selection()
        per_instance: list[list[Encoded]] = [[] for _ in selection.tracks]
        for frame in self.iter_frame_masks(selection.tracks):
            encoded = encode_frame(frame)
            if len(encoded) != len(per_instance):
                raise ValueError(
                    f"encode_frame returned {len(encoded)} items for {len(per_instance)} masks"
                )
            for instance, item in zip(per_instance, encoded, strict=True):
                instance.append(item)
        return {**self._summary(selection), "pred_segmentations": per_instance}

    def _summary(self, selection: TopKSelection) -> dict[str, Any]:
        return {
            "image_size": self.geometry.output_size,
            "pred_scores": selection.scores.tolist(),
            "pred_labels": selection.labels.tolist(),
        }


def paper_exact_video_results(
    logits: Tensor,
    masks: Tensor,
    embds: Tensor,
    *,
    image_size: Size,
    padded_size: Size,
    output_size: Size,
    top_k: int = 10,
) -> dict[str, Any]:
    """The paper's video-level result from a whole video's per-frame outputs.

    Args:
        logits: ``[T, Q, K+1]`` class logits per frame.
        masks: ``[T, Q, h, w]`` mask logits per frame.
        embds: ``[T, Q, C]`` query embeddings per frame.
        image_size: unpadded model input size ``(h_img, w_img)``.
        padded_size: padded model input size ``(H_pad, W_pad)``.
        output_size: ``(height, width)`` of the original video.
        top_k: number of (track, class) pairs kept (official: 10).

    Returns:
        The official eval-mode dict, see :meth:`VideoResultAccumulator.finalize`.
    """
    if logits.dim() != 3 or masks.dim() != 4 or embds.dim() != 3:
        raise ValueError(
            "expected logits [T, Q, K+1], masks [T, Q, h, w], embds [T, Q, C]; got shapes "
            f"{tuple(logits.shape)}, {tuple(masks.shape)}, {tuple(embds.shape)}"
        )
    if not logits.shape[0] == masks.shape[0] == embds.shape[0]:
        raise ValueError(
            f"inconsistent number of frames: logits {logits.shape[0]}, masks {masks.shape[0]}, "
            f"embds {embds.shape[0]}"
        )
    accumulator = VideoResultAccumulator(
        image_size=image_size,
        padded_size=padded_size,
        output_size=output_size,
        top_k=top_k,
        storage_device=masks.device,
    )
    for frame in zip(logits, masks, embds, strict=True):
        accumulator.add_frame(*frame)
    return accumulator.finalize()


@dataclass(frozen=True)
class FrameInstances:
    """Instances of one frame from :class:`StreamingVideoPredictor` (CPU tensors).

    Attributes:
        frame_index: 0-based index of the frame in the stream.
        track_ids: ``[N]`` stable track ids (aligned query slots).
        labels: ``[N]`` class ids (argmax of the running class distribution).
        scores: ``[N]`` running scores (probability of that class).
        masks: ``[N, height, width]`` bool masks, all non-empty.
        permutation: this frame's permutation into track order, ``[Q]`` with the default
            tracking options (``[N_tracks]`` with ``NO_QUERY`` entries when matches can be
            refused, see :class:`~minvis.tracker.TrackingOptions`).
    """

    frame_index: int
    track_ids: Tensor
    labels: Tensor
    scores: Tensor
    masks: Tensor
    permutation: Tensor


class StreamingVideoPredictor:
    """Online per-frame instances with stable track ids; memory independent of ``T``.

    A track is reported on a frame when its running score is ``>= score_threshold`` and
    its mask on that frame is non-empty. See the module docstring for how the running
    score differs from the paper-exact video score.
    """

    def __init__(
        self,
        *,
        image_size: Size,
        padded_size: Size,
        output_size: Size,
        score_threshold: float = 0.5,
        tracking: TrackingOptions = PAPER_TRACKING,
    ) -> None:
        self.geometry = MaskGeometry(image_size, padded_size, output_size)
        self.score_threshold = score_threshold
        self._aligner = _FrameAligner(tracking)

    def step(self, logits: Tensor, masks: Tensor, embds: Tensor) -> FrameInstances:
        """Consume one frame's raw outputs ``[Q, K+1]``, ``[Q, h, w]``, ``[Q, C]``."""
        frame_index = self._aligner.num_frames
        perm = self._aligner.add(logits, masks, embds)
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
