"""Pseudo-queries of a corpus: every captioner's texts, guarded against held-out queries.

Captioners read only train items' human queries (``CaptionContext`` refuses anything else),
yet a caption can still *coincide* with a held-out query of its own item (two stamps both
described "A flower."): such rows would put a validation or test query into training. They are
dropped (counted) or stop the run; captioners are asked for spares so the item stays covered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pandas as pd

from cart_pipeline.core.pairs import (
    LeakageError,
    assert_no_heldout_leak,
    heldout_matches,
    normalise_text,
)

from .context import CaptionContext

logger = logging.getLogger(__name__)

QUERY_COLUMNS = ["query_id", "item_id", "text", "split", "source"]


def pseudo_queries(
    context: CaptionContext,
    captioners: list[tuple[str, Callable[..., Any], int, dict[str, Any]]],
    human_queries: pd.DataFrame,
    heldout_policy: str = "drop",
    spare_captions: int = 3,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run (name, captioner, n, kwargs) in order -> (queries table, caption report).

    ``human_queries``: every human query (all splits), used only by the held-out guard.
    ``heldout_policy``: ``drop`` removes and counts captions equal to their item's held-out
    query, ``fail`` raises :class:`LeakageError`.
    """
    if heldout_policy not in ("drop", "fail"):
        raise ValueError(f"heldout policy must be 'drop' or 'fail', got {heldout_policy!r}")
    corpus = context.candidates
    frames, problems, wanted = [], [], {}
    for name, captioner, n, kwargs in captioners:
        wanted[f"pseudo:{name}"] = n
        frame, failed = captioner(context, n=n + spare_captions, **kwargs)
        logger.info(
            "%s: %d pseudo-queries for %d items, %d items not captioned",
            name,
            len(frame),
            frame.item_id.nunique(),
            len(failed),
        )
        frames.append(frame)
        problems += [(item, f"{name}: {reason}") for item, reason in failed]
    pseudo = pd.concat(frames, ignore_index=True)
    pseudo = pseudo[pseudo.text.str.strip() != ""]
    pseudo = (
        pseudo.assign(norm=normalise_text(pseudo.text))
        .drop_duplicates(["item_id", "norm"])
        .drop(columns="norm")
    )

    matches = heldout_matches(pseudo, human_queries)
    if matches.any() and heldout_policy == "fail":
        raise LeakageError(
            f"{matches.sum()} pseudo-queries equal their item's held-out (validation/test) query, "
            f"e.g. {pseudo[matches].head(3)[['item_id', 'text']].values.tolist()}"
        )
    pseudo = pseudo[~matches]
    # the first n that survived, per item and captioner (captioners list best first)
    pseudo = pseudo[pseudo.groupby(["item_id", "source"]).cumcount() < pseudo.source.map(wanted)]
    assert_no_heldout_leak(pseudo, human_queries)

    # stable sort: within an item and captioner the captioner's own order (best first) stays,
    # and the counter in the query id is that rank
    pseudo = pseudo.merge(corpus[["item_id", "split"]], on="item_id").sort_values(
        ["item_id", "source"], kind="stable"
    )
    counter = pseudo.groupby(["item_id", "source"]).cumcount().astype(str)
    pseudo["query_id"] = (
        "pq:" + pseudo.item_id + ":" + pseudo.source.str.removeprefix("pseudo:") + ":" + counter
    )
    pseudo = pseudo[QUERY_COLUMNS].reset_index(drop=True)

    uncovered = sorted(set(corpus.item_id) - set(pseudo.item_id))
    reasons = {
        item: [r for i, r in problems if i == item]
        or ["every caption was dropped by the held-out guard"]
        for item in uncovered
    }
    for item in uncovered:
        logger.warning("%s has no pseudo-query: %s", item, "; ".join(reasons[item]))
    held_out = human_queries[human_queries.split.isin(["validation", "test"])]
    report = {
        "items": int(len(corpus)),
        "items_with_pseudo_queries": int(pseudo.item_id.nunique()),
        "coverage": float(pseudo.item_id.nunique() / max(len(corpus), 1)),
        "pseudo_queries": int(len(pseudo)),
        "distinct_texts": int(pseudo.text.nunique()),
        "per_source": {k: int(v) for k, v in pseudo.source.value_counts().sort_index().items()},
        "heldout_guard": {
            "heldout_queries_checked": int(len(held_out)),
            "pseudo_queries_equal_to_their_items_heldout_query_dropped": int(matches.sum()),
            "policy": heldout_policy,
        },
        "not_captioned": [{"item_id": i, "reason": "; ".join(reasons[i])} for i in uncovered],
    }
    return pseudo, report
