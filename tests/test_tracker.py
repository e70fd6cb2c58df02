"""Query matching on hand-built embeddings whose correct alignment is known."""

import math

import pytest
import torch
from helpers import frame_outputs, match_embeddings

from minvis.tracking import Tracker


class QueryTracker(Tracker):
    """The tracker fed embeddings only (the query cost reads nothing else)."""

    def step(self, embds: torch.Tensor) -> torch.Tensor:
        return super().step(frame_outputs(torch.zeros(len(embds), 2), torch.zeros(len(embds), 1, 1), embds))


def basis(dim: int, *rows: int) -> torch.Tensor:
    """``[len(rows), dim]`` matrix whose i-th row is the unit vector e_{rows[i]}."""
    return torch.eye(dim)[list(rows)]


def test_identity() -> None:
    emb = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    assert match_embeddings(emb, emb).tolist() == list(range(6))


def test_permutation_is_inverse_of_shuffle() -> None:
    prev = basis(4, 0, 1, 2, 3)
    cur = prev[[2, 0, 3, 1]]  # current slot j holds target prev[shuffle[j]]
    perm = match_embeddings(prev, cur)
    assert perm.dtype == torch.long
    # target 0 is at current slot 1, target 1 at 3, target 2 at 0, target 3 at 2
    assert perm.tolist() == [1, 3, 0, 2]
    assert torch.equal(cur[perm], prev)


def test_swap_ignores_scale() -> None:
    prev = basis(3, 0, 1, 2)
    cur = torch.stack([3.0 * prev[1], 0.5 * prev[0], 7.0 * prev[2]])  # cosine ignores norm
    assert match_embeddings(prev, cur).tolist() == [1, 0, 2]


def test_more_queries_than_instances() -> None:
    # Two instance queries swap; four background queries keep their slots.
    prev = basis(8, 0, 1, 2, 3, 4, 5)
    cur = prev[[1, 0, 2, 3, 4, 5]] + 0.1 * basis(8, 6, 6, 7, 7, 7, 7)
    assert match_embeddings(prev, cur).tolist() == [1, 0, 2, 3, 4, 5]


def test_tie_orientation_follows_target_by_current() -> None:
    # Target 0 is orthogonal to every current query; targets 1, 2 and all current
    # queries are e0, so every cost is 0 or 1 and many assignments tie. Solving the
    # [target, current] problem gives the identity; solving the transposed problem
    # and inverting would give [2, 0, 1].
    prev = basis(2, 1, 0, 0)
    cur = basis(2, 0, 0, 0)
    assert match_embeddings(prev, cur).tolist() == [0, 1, 2]


def test_death_and_birth_keep_slots() -> None:
    # Slots: A, B (instances), N1, N2 (background queries); D, C are new directions.
    a, b, n1, n2, c, d = basis(6, 0, 1, 2, 3, 4, 5)
    tracker = QueryTracker()
    assert tracker.step(torch.stack([a, b, n1, n2])).tolist() == [0, 1, 2, 3]
    # Shuffled frame.
    assert tracker.step(torch.stack([n2, b, a, n1])).tolist() == [2, 1, 3, 0]
    # Death: B's query drifts away (its mask would be empty) but stays closest to B.
    dying = 0.6 * b + 0.8 * d
    assert tracker.step(torch.stack([a, n1, n2, dying])).tolist() == [0, 3, 1, 2]
    # Birth: a background query starts describing a new object C.
    born = 0.8 * n1 + 0.6 * c
    assert tracker.step(torch.stack([born, dying, n2, a])).tolist() == [3, 1, 0, 2]
    expected = torch.stack([a, dying, born, n2])
    assert torch.equal(tracker.tracks.embds, expected)


def test_unmatched_new_direction_takes_the_free_slot_and_keeps_it() -> None:
    e0, e1, e2, e3, new = basis(5, 0, 1, 2, 3, 4)
    tracker = QueryTracker()
    tracker.step(torch.stack([e0, e1, e2, e3]))
    # e2 vanished; `new` is orthogonal to every target, so it fills slot 2.
    assert tracker.step(torch.stack([e3, e0, e1, new])).tolist() == [1, 2, 3, 0]
    # The next frame is matched against the aligned previous frame, where slot 2 = new.
    assert tracker.step(torch.stack([new, e1, e3, e0])).tolist() == [3, 1, 0, 2]


def rotated(angles_deg: list[float]) -> torch.Tensor:
    rad = torch.tensor(angles_deg) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1)  # [Q, 2]


def test_matches_previous_aligned_frame_not_first() -> None:
    # Three queries 120 deg apart rotate 50 deg per frame. After two frames each is
    # 100 deg from its own first-frame position but only 20 deg from its neighbour's,
    # so matching against frame 0 would cycle the tracks; matching frame to frame
    # (50 deg steps) keeps them.
    tracker = QueryTracker()
    tracker.step(rotated([0, 120, 240]))
    assert tracker.step(rotated([50, 170, 290])).tolist() == [0, 1, 2]
    assert tracker.step(rotated([100, 220, 340])).tolist() == [0, 1, 2]
    first = rotated([0, 120, 240])
    assert match_embeddings(first, rotated([100, 220, 340])).tolist() == [2, 0, 1]


def test_a_new_tracker_starts_new_tracks() -> None:
    tracker = QueryTracker()
    tracker.step(basis(3, 0, 1, 2))
    tracker = QueryTracker()  # one tracker per video
    assert tracker.tracks is None
    assert tracker.step(basis(3, 2, 1, 0)).tolist() == [0, 1, 2]


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        match_embeddings(torch.ones(3, 4), torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"embds \[Q, C\]"):
        QueryTracker().step(torch.ones(3))
    tracker = QueryTracker()
    tracker.step(torch.ones(3, 4))
    with pytest.raises(ValueError, match="Q, K, C and the size must stay constant"):
        tracker.step(torch.ones(3, 5))
