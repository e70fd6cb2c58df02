"""Identity switches of tools/analysis/tracking_analysis.py on hand-built tracks."""

import runpy
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "analysis" / "identity_switches.py"
_MODULE = runpy.run_path(str(SCRIPT))
IdentityStats = _MODULE["IdentityStats"]
identity_stats = _MODULE["identity_stats"]
mask_iou = _MODULE["mask_iou"]


def boxes(*columns: int | None) -> np.ndarray:
    """``[T, 2, 4]`` masks: on frame t the column ``columns[t]`` (None: empty)."""
    masks = np.zeros((len(columns), 2, 4), dtype=bool)
    for t, column in enumerate(columns):
        if column is not None:
            masks[t, :, column] = True
    return masks


def test_mask_iou() -> None:
    a = boxes(0, 1)  # two masks of 2 pixels
    b = np.stack([a[0], a[0] | a[1], np.zeros_like(a[0])])
    assert np.allclose(mask_iou(a, b), [[1.0, 0.5, 0.0], [0.0, 0.5, 0.0]])


def test_switches_count_changes_of_the_best_track() -> None:
    gt = np.stack([boxes(0, 0, None, 0, 0)])  # leaves on frame 2, comes back on frame 3
    same = np.stack([boxes(0, 0, None, 0, 0)])
    assert identity_stats(gt, same, min_iou=0.5) == IdentityStats(0, 4, 4)
    # Re-entry under a new track: one switch; switching back later: a second one.
    reentry = np.stack([boxes(0, 0, None, None, 0), boxes(None, None, None, 0, None)])
    assert identity_stats(gt, reentry, min_iou=0.5) == IdentityStats(2, 4, 4)
    # A frame without a good enough match neither counts nor resets the last match.
    missed = np.stack([boxes(0, 2, None, 0, 0)])
    assert identity_stats(gt, missed, min_iou=0.5) == IdentityStats(0, 3, 4)
    no_tracks = np.zeros((0, 5, 2, 4), dtype=bool)
    assert identity_stats(gt, no_tracks, min_iou=0.5) == IdentityStats(0, 0, 4)
    assert IdentityStats(1, 2, 3) + IdentityStats(1, 1, 1) == IdentityStats(2, 3, 4)
