"""The (text, item) training pairs shared by CART and the dual tower.

Evaluation protocol (docs/architecture.md): train on human queries of *train* items plus
pseudo-queries of *all* items; select on human queries of *validation* items and test on
those of *test* items, neither of which ever enters training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PAIR_COLUMNS = ["query_id", "text", "item_id", "source", "is_validation"]


class LeakageError(AssertionError):
    """A held-out (validation or test) query reached training input."""


def training_pairs(
    human_queries: pd.DataFrame,
    pseudo_queries: pd.DataFrame,
    pseudo_per_described_item: int | None = None,
) -> pd.DataFrame:
    """Training pairs, plus the validation queries flagged ``is_validation``.

    Trained on (``is_validation`` False): human queries of train items and pseudo-queries of
    every item. Validation (True): human queries of validation items, carved at ingest like
    the test split, so they look like the test queries and were never captioner input; those
    items keep their pseudo-queries in training, just as test items do.
    ``pseudo_per_described_item``: an item that has a human training query keeps at most this
    many pseudo-queries per captioner, its best ones (None = all, 0 = none): pseudo-queries
    matter most for the items nobody described.
    """
    human = human_queries[human_queries.split.isin(["train", "validation"])]
    if pseudo_per_described_item is not None:
        described = pseudo_queries.item_id.isin(
            human_queries.item_id[human_queries.split == "train"]
        )
        rank = pseudo_queries.groupby(["item_id", "source"], sort=False).cumcount()
        pseudo_queries = pseudo_queries[~described | (rank < int(pseudo_per_described_item))]
    pairs = pd.concat(
        [
            pd.DataFrame(
                {
                    "query_id": human.query_id.to_numpy(),
                    "text": human.text.to_numpy(),
                    "item_id": human.item_id.to_numpy(),
                    "source": "human",
                    "is_validation": (human.split == "validation").to_numpy(),
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
    assert_no_heldout_leak(pairs[~pairs.is_validation], human_queries)
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


HELD_OUT_SPLITS = ("validation", "test")


def heldout_matches(texts: pd.DataFrame, human_queries: pd.DataFrame) -> np.ndarray:
    """(len(texts),) bool: the row's (item_id, text) is a held-out (validation or test) human
    query of that same item, compared case- and punctuation-insensitively."""
    held_out = human_queries[human_queries.split.isin(HELD_OUT_SPLITS)]
    if held_out.empty or texts.empty:
        return np.zeros(len(texts), dtype=bool)
    keys = pd.MultiIndex.from_arrays([held_out.item_id, normalise_text(held_out.text)])
    return pd.MultiIndex.from_arrays([texts.item_id, normalise_text(texts.text)]).isin(keys)


def assert_no_heldout_leak(pairs: pd.DataFrame, human_queries: pd.DataFrame) -> None:
    """Fail if a validation or test item's human query is a training pair *for that item*."""
    leaked = pairs[heldout_matches(pairs, human_queries)]
    if len(leaked):
        raise LeakageError(
            f"{len(leaked)} held-out (validation/test) queries appear as training pairs, "
            f"e.g. {leaked[['item_id', 'text']].head(3).values.tolist()}"
        )


def text_features_of(
    query_ids: pd.Series | np.ndarray, *feature_tables: pd.DataFrame
) -> np.ndarray:
    """(n, D) pooled text embeddings of ``query_ids``, looked up in (query_id, embedding) tables."""
    from cart_pipeline.core.tables import column_to_matrix

    table = pd.concat(feature_tables, ignore_index=True)
    rows = pd.Index(table.query_id).get_indexer(np.asarray(query_ids))
    if (rows < 0).any():
        missing = np.asarray(query_ids)[rows < 0]
        raise KeyError(f"{len(missing)} queries have no text features, e.g. {missing[:3].tolist()}")
    return column_to_matrix(table.embedding)[rows]
