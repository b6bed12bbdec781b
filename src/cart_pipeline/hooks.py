"""Project hooks."""

from __future__ import annotations

import logging

import torch
from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class TorchThreadsHook:
    """Caps torch's intra-op threads at `num_threads` (parameters.yml) for the whole run.

    On a small machine torch's default (all cores, plus inter-op threads) oversubscribes the
    CPU as soon as media decoding threads run beside it.
    """

    @hook_impl
    def after_context_created(self, context) -> None:
        threads = context.params.get("num_threads")
        if threads:
            torch.set_num_threads(int(threads))
            logger.info("torch uses %d threads", int(threads))

