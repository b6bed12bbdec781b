"""Kedro datasets: torch checkpoints (kedro-datasets has none that loads safely), and
kedro-datasets' parquet, CSV and JSON datasets with saves that are all or nothing."""

from .atomic import CSVDataset, JSONDataset, ParquetDataset
from .torch_checkpoint import TorchCheckpointDataset

__all__ = ["CSVDataset", "JSONDataset", "ParquetDataset", "TorchCheckpointDataset"]
