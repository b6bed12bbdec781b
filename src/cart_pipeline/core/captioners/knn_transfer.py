"""`knn_transfer`: the human texts of an item's nearest *train* neighbours (same modality).

The standard nearest-neighbour captioning baseline (Devlin et al., 2015): an item's caption
is borrowed from the most similar items that have one. The item itself is never its own
neighbour, and only train items' human queries are read (enforced by CaptionContext).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .context import CAPTION_COLUMNS, CaptionContext

SOURCE = "pseudo:knn_transfer"


def knn_transfer(
    context: CaptionContext, n: int = 3, batch_size: int = 4096
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    candidates = context.candidates.reset_index(drop=True)
    queries = context.train_queries
    if queries.empty:
        return context.skip_all("no human queries of train items to transfer")

    row_of = pd.Series(np.arange(len(candidates)), index=candidates.item_id)
    donors = np.unique(
        row_of.loc[queries.item_id.unique()].to_numpy()
    )  # (P,) candidate rows with text
    texts_of = queries.groupby("item_id", sort=True).text.first()  # one text per donor item
    donor_texts = texts_of.loc[candidates.item_id.to_numpy()[donors]].to_numpy()

    features = np.asarray(context.features, dtype=np.float32)
    donor_features = features[donors]  # (P, D)
    k = min(n, len(donors))
    rows = []
    for start in range(0, len(candidates), batch_size):
        block = np.arange(start, min(start + batch_size, len(candidates)))
        similarity = features[block] @ donor_features.T  # (b, P)
        similarity[block[:, None] == donors[None, :]] = -np.inf  # never the item itself
        # stable ordering: ties broken by donor row, so the same seed gives the same text
        nearest = np.argsort(-similarity, axis=1, kind="stable")[:, : k + 1]
        for i, row in enumerate(block):
            picked = [d for d in nearest[i] if np.isfinite(similarity[i, d])][:k]
            rows += [(candidates.item_id[row], donor_texts[d], SOURCE) for d in picked]
    frame = pd.DataFrame(rows, columns=CAPTION_COLUMNS)
    missing = set(candidates.item_id) - set(frame.item_id)
    return frame, [(item, "no train neighbour with a human query") for item in sorted(missing)]
