"""MinVIS's tracker: Hungarian matching of query embeddings between frames.

:mod:`.tracker` is the paper's method (and the switches of its analyses);
:mod:`.costs` the mask-overlap costs of the Table 4 analysis. Pure torch and scipy: no
detectron2 is imported.
"""

from .costs import MATCHING_MODES, MaskOverlapCost, matching_cost_terms
from .tracker import (
    NO_QUERY,
    PAPER_TRACKING,
    CostTerm,
    FrameQueries,
    QueryCost,
    QueryTracker,
    TrackingOptions,
    cosine_similarity,
    solve_assignment,
    unit_rows,
)

__all__ = [
    "MATCHING_MODES",
    "NO_QUERY",
    "PAPER_TRACKING",
    "CostTerm",
    "FrameQueries",
    "MaskOverlapCost",
    "QueryCost",
    "QueryTracker",
    "TrackingOptions",
    "cosine_similarity",
    "matching_cost_terms",
    "solve_assignment",
    "unit_rows",
]
