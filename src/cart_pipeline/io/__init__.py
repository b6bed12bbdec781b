"""Kedro datasets that kedro-datasets does not provide."""

from .torch_checkpoint import TorchCheckpointDataset

__all__ = ["TorchCheckpointDataset"]
