"""Kedro datasets: torch checkpoints (kedro-datasets has none that loads safely), and
kedro-datasets' parquet, CSV and JSON datasets with saves that are all or nothing."""

from .atomic import (
    CSVDataset,
    JSONDataset,
    ManifestDataset,
    MatplotlibDataset,
    ParquetDataset,
    TextDataset,
    write_atomically,
)
from .torch_checkpoint import TorchCheckpointDataset

__all__ = [
    "CSVDataset",
    "JSONDataset",
    "ManifestDataset",
    "MatplotlibDataset",
    "ParquetDataset",
    "TextDataset",
    "TorchCheckpointDataset",
    "write_atomically",
]
