"""What a captioner may read: the corpus, its features and the *train* human queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CAPTION_COLUMNS = ["item_id", "text", "source"]


@dataclass
class CaptionContext:
    """Inputs of a captioner.

    candidates: item_id, modality, media_path, split (one modality's corpus).
    features: (N, D) L2-normalised candidate embeddings, rows aligned with `candidates`.
    train_queries: human queries of *train* items only (item_id, text); the constructor
        refuses anything else, so no captioner can read a test query.
    class_top / class_prob: optional (N, k) ImageNet predictions of the image encoder.
    text_encoder: the frozen query encoder (``.encode(texts) -> (n, D)``), for captioners
        that rank texts; seed: for captioners that train something.
    """

    candidates: pd.DataFrame
    features: np.ndarray
    train_queries: pd.DataFrame
    class_top: np.ndarray | None = None
    class_prob: np.ndarray | None = None
    dataset_root: Path | None = None
    text_encoder: Any = None
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.features) != len(self.candidates):
            raise ValueError(
                f"{len(self.features)} feature rows for {len(self.candidates)} candidates"
            )
        if "split" in self.train_queries and (self.train_queries.split != "train").any():
            raise ValueError("captioners may only read human queries of train items")
        train_items = set(self.candidates.item_id[self.candidates.split == "train"])
        stray = set(self.train_queries.item_id) - train_items
        if stray:
            raise ValueError(
                f"train_queries name {len(stray)} items that are not train candidates, e.g. {sorted(stray)[:3]}"
            )

    def skip_all(self, reason: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
        """A captioner's answer when it can caption nothing: no rows, every item with why."""
        return pd.DataFrame(columns=CAPTION_COLUMNS), [
            (item, reason) for item in self.candidates.item_id
        ]
