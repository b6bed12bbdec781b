"""One call that makes a run repeatable: same seed => same numbers (docs/architecture.md, evaluation).

Seeds Python, NumPy's legacy global RNG and torch (CPU and CUDA), and asks torch for
deterministic kernels. Code in this package still prefers explicit generators
(``np.random.default_rng(seed)``, ``torch.Generator().manual_seed(seed)``) so that a library
call in between cannot shift its random stream; this function covers whatever does not.
"""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

logger = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python/numpy/torch and (optionally) switch torch to deterministic algorithms."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # the legacy global RNG only takes 32-bit seeds
    torch.manual_seed(seed)  # also seeds every CUDA device
    # Only affects subprocesses (this interpreter's hash seed is fixed at start-up), but
    # dataloader workers and kedro runners that spawn inherit it.
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # Same switch as torch.use_deterministic_algorithms(True, warn_only=True) ("warn": an op
        # without a deterministic kernel warns instead of crashing a long run), minus the
        # torch.compile/inductor flag, whose import alone costs seconds and which we never use.
        torch.set_deterministic_debug_mode("warn")
        # That mode also fills every new tensor with NaN, a debugging aid against reading
        # uninitialised memory, not a part of determinism (no kernel here reads it: the same
        # seed trains bitwise the same decoder either way); beam search runs 1.02x faster
        # without it (benchmarks/nan_fill.py).
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    logger.debug("seeded everything with %d (deterministic=%s)", seed, deterministic)
