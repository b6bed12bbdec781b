"""The (text, item) training pairs shared by CART and the dual tower.

Evaluation protocol (DESIGN.md): train on human queries of *train* items plus pseudo-queries
of *all* items; test on human queries of *test* items, which never enter training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PAIR_COLUMNS = ["query_id", "text", "item_id", "source", "is_validation"]


class LeakageError(AssertionError):
    """A test query reached training input."""


def training_pairs(
    human_queries: pd.DataFrame, pseudo_queries: pd.DataFrame, validation_fraction: float, seed: int
) -> pd.DataFrame:
    """Pairs for training, with a seeded validation slice of the *human* train queries.

    Validation comes from human queries because they look like the test queries; their items
    keep their pseudo-queries in training, just as test items do.
    """
    human = human_queries[human_queries.split == "train"]
    rng = np.random.default_rng(seed)
    is_validation = rng.random(len(human)) < validation_fraction
    pairs = pd.concat(
        [
            pd.DataFrame(
                {
                    "query_id": human.query_id.to_numpy(),
                    "text": human.text.to_numpy(),
                    "item_id": human.item_id.to_numpy(),
                    "source": "human",
                    "is_validation": is_validation,
                }
            ),
            pd.DataFrame(
                {
                    "query_id": pseudo_queries.query_id.to_numpy(),
                    "text": pseudo_queries.text.to_numpy(),
                    "item_id": pseudo_queries.item_id.to_numpy(),
                    "source": pseudo_queries.source.to_numpy(),
                    "is_validation": False,
                }
            ),
        ],
        ignore_index=True,
    )
    assert_no_test_leak(pairs, human_queries)
    return pairs


def index_pairs(pairs: pd.DataFrame, item_ids: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Keep pairs whose item is in the index ``item_ids``; return them with each one's row there."""
    row_of = pd.Series(np.arange(len(item_ids)), index=item_ids)
    kept = pairs[pairs.item_id.isin(row_of.index)].reset_index(drop=True)
    return kept, row_of.loc[kept.item_id].to_numpy()


def item_descriptions(queries: pd.DataFrame) -> pd.Series:
    """item_id -> the item's first human text (what reports and search results show)."""
    return queries[queries.source == "human"].drop_duplicates("item_id").set_index("item_id").text


def normalise_text(text: pd.Series) -> pd.Series:
    """Case- and punctuation-insensitive form used by the leakage guards."""
    return text.str.lower().str.replace(r"[^\w\s]", " ", regex=True).str.split().str.join(" ")


def assert_no_test_leak(pairs: pd.DataFrame, human_queries: pd.DataFrame) -> None:
    """Fail if a test item's human query text is a training pair *for that item*."""
    test = human_queries[human_queries.split == "test"]
    if test.empty or pairs.empty:
        return
    test_keys = set(zip(test.item_id, normalise_text(test.text), strict=True))
    pair_keys = zip(pairs.item_id, normalise_text(pairs.text), strict=True)
    leaked = [key for key in pair_keys if key in test_keys]
    if leaked:
        raise LeakageError(
            f"{len(leaked)} test queries appear as training pairs, e.g. {leaked[:3]}"
        )
