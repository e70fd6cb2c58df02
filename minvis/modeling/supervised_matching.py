"""Supervised matching (paper Table 5): a hinge loss tying an instance's queries across frames.

MinVIS trains on single frames; this optional loss (``MODEL.MINVIS.SUPERVISED_MATCHING``)
trains on two frames A, B of each video instead. For every ground-truth instance present
in both, let ``a`` and ``b`` be the queries the criterion's Hungarian matcher assigned to
it in A and in B. With ``s(x, y)`` the cosine similarity of the final query embeddings
(``pred_embds``, which the tracker matches with ``1 - cos``), the loss asks ``s(a, b)`` to
beat ``s(a, j)`` by ``margin`` for every other query ``j`` of B::

    loss = mean over (instance, j != b) of max(0, margin - s(a, b) + s(a, j))

The mean runs over the terms of all consecutive frame pairs of all videos in the batch;
the loss is 0 (still connected to the graph) when the batch has no such term.
Cosine rather than the raw inner product makes the margin independent of the embedding
scale and makes the loss shape exactly what the tracker compares. Pure torch.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from minvis.tracking import unit_rows

Indices = tuple[Tensor, Tensor]  # (query index [M], target index [M]) of one frame


def matched_query_pairs(indices_a: Indices, indices_b: Indices, ids_a: Tensor, ids_b: Tensor) -> Tensor:
    """``[M, 2]`` (query in A, query in B) of each instance matched in both frames; ``ids_*``: the
    instance (track) id of each target of the frame."""
    query_in_b = {int(ids_b[t]): int(q) for q, t in zip(*indices_b, strict=True)}
    pairs = [
        (int(q), query_in_b[int(ids_a[t])])
        for q, t in zip(*indices_a, strict=True)
        if int(ids_a[t]) in query_in_b
    ]
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)


def pair_hinge_terms(embds_a: Tensor, embds_b: Tensor, pairs: Tensor, margin: float) -> tuple[Tensor, int]:
    """Sum and number of the hinge terms of one frame pair (embeddings ``[Q, C]``)."""
    pairs = pairs.to(embds_a.device)
    similarity = unit_rows(embds_a[pairs[:, 0]]) @ unit_rows(embds_b).T  # [M, Q]
    positive = similarity.gather(1, pairs[:, 1:])  # [M, 1]
    hinge = (margin - positive + similarity).clamp(min=0)  # [M, Q]
    negative = torch.ones_like(hinge, dtype=torch.bool)
    negative[torch.arange(len(pairs), device=hinge.device), pairs[:, 1]] = False
    return hinge[negative].sum(), int(negative.sum())


def supervised_matching_loss(
    embds: Tensor, ids: Sequence[Tensor], indices: Sequence[Indices], frames_per_video: Sequence[int],
    margin: float,
) -> Tensor:  # fmt: skip
    """The loss of a batch of clips (see the module docstring). ``embds``: ``[F, Q, C]``, video after
    video; ``ids`` and ``indices`` (the criterion's final-layer matching): per frame."""
    total, count = embds.sum() * 0.0, 0
    start = 0
    for num_frames in frames_per_video:
        for a in range(start, start + num_frames - 1):
            pairs = matched_query_pairs(indices[a], indices[a + 1], ids[a], ids[a + 1])
            if len(pairs):
                terms, num_terms = pair_hinge_terms(embds[a], embds[a + 1], pairs, margin)
                total, count = total + terms, count + num_terms
        start += num_frames
    return total / max(count, 1)
