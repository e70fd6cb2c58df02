"""Query matching between frames: MinVIS's tracker.

Every frame of a video goes through the image model independently, so query slot ``i``
of frame ``t`` and slot ``i`` of frame ``t + 1`` need not describe the same object.
MinVIS aligns them with the Hungarian algorithm on the cost ``1 - cos(e_prev, e_cur)``
between query embeddings, matching each new frame against the *aligned* embeddings of
the previous frame. After alignment a slot index is a track: births and deaths need no
heuristics, they are queries whose masks become non-empty or empty.

The whole method is :meth:`QueryTracker.step`: cost (:class:`QueryCost`), Hungarian
assignment (:func:`solve_assignment`), alignment to the tracks (``_remember``).
:class:`TrackingOptions` (defaults = the paper) add, for the paper's analyses (section
4.3), extensions that each show up as one marked step there:

* other cost terms (:mod:`minvis.tracking.costs`: mask-overlap heuristics, or both), all
  summed into one cost matrix for one Hungarian solver;
* a track memory: each track remembers an exponential moving average of its embeddings
  (``memory_momentum``) instead of only its last one;
* refused matches (``min_similarity``): a track whose assigned query has a cosine
  similarity below the threshold with the track's memory gets no query on this frame
  (it keeps its memory, so its object can come back to it later), and that query starts
  a new track. The number of tracks ``N`` then grows beyond ``Q`` (by at most ``Q`` per
  frame); every frame's queries are matched against all ``N`` tracks, so ``N - Q`` of
  them are without a query on each frame. Without refusals ``N == Q`` and the tracker
  is the paper's.

Pure torch/scipy; costs are computed on the embeddings' device and the assignment is
solved on the CPU.
"""

from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = [
    "NO_QUERY",
    "PAPER_TRACKING",
    "CostTerm",
    "FrameQueries",
    "QueryCost",
    "QueryTracker",
    "TrackingOptions",
    "cosine_similarity",
    "solve_assignment",
    "unit_rows",
]

NO_QUERY = -1  # permutation entry of a track that has no query on a frame


@dataclass(frozen=True)
class FrameQueries:
    """Per-query outputs of one frame (or per-track memory), as the cost terms see them.

    Attributes:
        embds: ``[N, C]`` query embeddings.
        logits: ``[N, K+1]`` class logits (last = no object), if a cost term needs them.
        masks: ``[N, h, w]`` mask logits, if a cost term needs them.
    """

    embds: Tensor
    logits: Tensor | None = None
    masks: Tensor | None = None

    def __len__(self) -> int:
        return self.embds.shape[0]

    def take(self, index: Tensor) -> "FrameQueries":
        """Rows ``index [M]`` (any device) of every field."""
        return FrameQueries(*(None if x is None else x[index.to(x.device)] for x in self.fields()))

    def fields(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        return self.embds, self.logits, self.masks


class CostTerm(Protocol):
    """``(tracks [N rows], current [Q rows]) -> cost [N, Q]``; lower is a better match."""

    needs_outputs: bool  # reads logits and masks (the tracker then remembers them per track)

    def __call__(self, tracks: FrameQueries, current: FrameQueries) -> Tensor: ...


def unit_rows(x: Tensor) -> Tensor:
    """``[N, C] -> [N, C]``, each row scaled to unit L2 norm (zero rows stay zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine similarity of ``[M, C]`` and ``[M, C]`` -> ``[M]``."""
    return (unit_rows(a) * unit_rows(b)).sum(dim=1)


@dataclass(frozen=True)
class QueryCost:
    """MinVIS's cost ``1 - cos(e_track, e_current)`` on the query embeddings."""

    needs_outputs: ClassVar[bool] = False

    def __call__(self, tracks: FrameQueries, current: FrameQueries) -> Tensor:
        # Computed as [current, track] and transposed, as the official release does:
        # other orientations round differently and can break ties differently.
        similarity = unit_rows(current.embds) @ unit_rows(tracks.embds).T  # [Q, N]
        return (1 - similarity).T  # [N, Q]


@dataclass(frozen=True)
class TrackingOptions:
    """How the tracker matches; the defaults are the paper's MinVIS.

    Attributes:
        cost_terms: summed into the ``[tracks, queries]`` cost (see
            :func:`minvis.tracking.costs.matching_cost_terms`).
        memory_momentum: a track's remembered embedding is ``m * memory + (1 - m) * e``
            after each frame where it has a query ``e``; 0 keeps only the last embedding.
        min_similarity: matches with a cosine similarity below this are refused
            (see the module docstring); -1 never refuses.
    """

    cost_terms: tuple[CostTerm, ...] = (QueryCost(),)
    memory_momentum: float = 0.0
    min_similarity: float = -1.0

    def __post_init__(self) -> None:
        if not self.cost_terms:
            raise ValueError("at least one matching cost term is needed")
        if not 0.0 <= self.memory_momentum < 1.0:
            raise ValueError(f"memory_momentum must be in [0, 1), got {self.memory_momentum}")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in [-1, 1], got {self.min_similarity}")

    @property
    def needs_outputs(self) -> bool:
        """Whether the tracker needs each frame's logits and masks."""
        return any(term.needs_outputs for term in self.cost_terms)

    @property
    def refuses_matches(self) -> bool:
        return self.min_similarity > -1.0


PAPER_TRACKING = TrackingOptions()


def solve_assignment(cost: Tensor) -> Tensor:
    """Hungarian assignment of a ``[N, Q]`` (``N >= Q``) track x query cost.

    Returns:
        CPU ``LongTensor [N]``: the query continuing each track, :data:`NO_QUERY` for
        the ``N - Q`` tracks left without one. For ``N == Q`` this is the permutation of
        the ``[target, current]`` problem's column indices, the orientation the official
        release uses (solving the transposed problem can break ties differently).
    """
    rows, columns = linear_sum_assignment(cost.detach().cpu().numpy())
    perm = torch.full((cost.shape[0],), NO_QUERY, dtype=torch.long)
    perm[torch.as_tensor(rows, dtype=torch.long)] = torch.as_tensor(columns, dtype=torch.long)
    return perm


class QueryTracker:
    """Online tracker: assigns each frame's queries to the tracks so far.

    The first frame fixes the track order (identity permutation); every later frame is
    matched against the tracks' memory (by default: the previous frame's aligned
    embeddings). Memory is one ``[N, C]`` matrix (plus ``[N, K+1]`` logits and
    ``[N, h, w]`` masks for mask-overlap costs): independent of the video length, as
    ``N == Q``, unless refused matches add tracks.
    """

    def __init__(self, options: TrackingOptions = PAPER_TRACKING) -> None:
        self.options = options
        self._tracks: FrameQueries | None = None  # per-track memory, [N, ...]
        self._query_shape: torch.Size | None = None  # [Q, C] of the video's frames

    @property
    def aligned_embeddings(self) -> Tensor | None:
        """The tracks' remembered embeddings, ``[N, C]`` (None before any frame).

        With the default options: the last frame's embeddings in track order.
        """
        return None if self._tracks is None else self._tracks.embds

    @property
    def num_tracks(self) -> int:
        return 0 if self._tracks is None else len(self._tracks)

    def step(self, embeddings: Tensor, logits: Tensor | None = None, masks: Tensor | None = None) -> Tensor:
        """Consume one frame's ``[Q, C]`` query embeddings (and ``[Q, K+1]`` logits and
        ``[Q, h, w]`` mask logits, needed by mask-overlap costs).

        Returns:
            CPU ``LongTensor [N]`` ``perm``: the query of each track on this frame, or
            :data:`NO_QUERY`. With the default options ``N == Q`` and ``x[perm]`` puts any
            per-query output of this frame in track order (slot ``i`` = track ``i``).
        """
        current = self._frame(embeddings, logits, masks)
        if self._tracks is None:
            perm = torch.arange(len(current))  # the first frame fixes the track order
        else:
            # 1. Cost of continuing each track with each query; the paper: 1 - cos
            #    (extension: mask-overlap terms added to it, see minvis.tracking.costs).
            costs = [term(self._tracks, current) for term in self.options.cost_terms]  # [N, Q] each
            # 2. Hungarian assignment of the queries to the tracks.
            perm = solve_assignment(sum(costs[1:], costs[0]))
            if self.options.refuses_matches:  # extension: refuse dissimilar matches
                perm = self._refuse_dissimilar(perm, current)
        # 3. Alignment: the frame's queries in track order become the targets of the next
        #    frame (extension: a moving average of them, memory_momentum).
        self._tracks = self._remember(perm, current)
        return perm

    def _frame(self, embeddings: Tensor, logits: Tensor | None, masks: Tensor | None) -> FrameQueries:
        if embeddings.dim() != 2:
            raise ValueError(f"expected [Q, C] embeddings, got shape {tuple(embeddings.shape)}")
        if self._query_shape is not None and embeddings.shape != self._query_shape:
            raise ValueError(
                f"embeddings of shape {tuple(embeddings.shape)} do not match the previous "
                f"frames' {tuple(self._query_shape)} (Q and C must stay constant)"
            )
        self._query_shape = embeddings.shape
        if not self.options.needs_outputs:
            return FrameQueries(embeddings)
        if logits is None or masks is None:
            raise ValueError("these tracking options need each frame's logits and masks")
        return FrameQueries(embeddings, logits, masks)

    def _refuse_dissimilar(self, perm: Tensor, current: FrameQueries) -> Tensor:
        """Extension (``min_similarity``): unassign matches below the threshold; their
        queries start new tracks."""
        tracked = torch.nonzero(perm != NO_QUERY).flatten()  # [n]
        similarity = cosine_similarity(
            self._tracks.take(tracked).embds, current.take(perm[tracked]).embds
        ).cpu()  # [n]
        refused = tracked[similarity < self.options.min_similarity]  # [r]
        newborn = perm[refused]  # [r] queries that start tracks N..N+r-1
        perm = perm.clone()
        perm[refused] = NO_QUERY
        return torch.cat([perm, newborn])

    def _remember(self, perm: Tensor, current: FrameQueries) -> FrameQueries:
        """The tracks' memory after a frame assigned by ``perm [N']`` (``N' >= N``)."""
        seen = current.take(perm.clamp(min=0))  # [N', ...] garbage rows where NO_QUERY
        if self._tracks is None:
            return seen
        old = self._tracks
        num_old = len(old)
        missing = perm[:num_old] == NO_QUERY  # [N] tracks that keep their memory
        momentum = self.options.memory_momentum
        fields = []
        for name, old_x, new_x in zip(("embds", "logits", "masks"), old.fields(), seen.fields()):
            if old_x is None:
                fields.append(None)
                continue
            head = new_x[:num_old]
            if name == "embds" and momentum > 0:
                head = torch.lerp(head, old_x, momentum)  # m * memory + (1 - m) * new
            keep = missing.to(old_x.device).view(-1, *[1] * (old_x.dim() - 1))
            fields.append(torch.cat([torch.where(keep, old_x, head), new_x[num_old:]]))
        return FrameQueries(*fields)
