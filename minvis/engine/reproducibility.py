"""Same seed, same machine, same weights: what detectron2's seeding leaves open.

``NUM_THREADS`` > 0 fixes torch's intra-op CPU threads (float reductions split their work by
thread count, so another count gives other weights); ``DETERMINISTIC`` turns on torch's
deterministic algorithms where it has them and cuDNN's deterministic mode.
"""

import logging
import os

import torch
from detectron2.config import CfgNode

logger = logging.getLogger(__name__)


def apply_reproducibility(cfg: CfgNode) -> None:
    """Apply ``NUM_THREADS`` and ``DETERMINISTIC`` to this process (call before building the model)."""
    if cfg.NUM_THREADS > 0:
        torch.set_num_threads(cfg.NUM_THREADS)
    if cfg.DETERMINISTIC:
        # cuBLAS is deterministic only with a fixed workspace, set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        if cfg.SEED < 0:
            logger.warning("DETERMINISTIC is set but SEED < 0 (a random seed): runs will differ.")
