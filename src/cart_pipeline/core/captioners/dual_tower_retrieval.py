"""`dual_tower_retrieval`: caption an item with the texts a cross-modal model ranks highest.

Cross-modal caption retrieval: a small dual tower (the baseline's architecture) is trained on
the human queries of *train* items only, then every candidate ranks a text pool with it and
its top texts become its pseudo-queries. Unlike ``knn_transfer`` (texts of the nearest items
in the *media* space) the ranking is learned from text-media pairs, and unlike
``imagenet_labels`` it can pick any text of the pool. The pool holds no validation or test
text: the distinct train human texts, and optionally the 1000 ImageNet class names as short
descriptions ("A garbage truck."), which ship with the image encoder.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .context import CAPTION_COLUMNS, CaptionContext

SOURCE = "pseudo:dual_tower_retrieval"
POOLS = ("train_texts", "imagenet_classes")


def imagenet_descriptions() -> list[str]:
    """'garbage truck, dustcart' -> 'A garbage truck.', one per class, duplicates dropped."""
    from cart_pipeline.core.encoders.image import imagenet_class_names

    from .imagenet_labels import _with_article

    names = [name.split(",")[0].strip() for name in imagenet_class_names()]
    return list(
        dict.fromkeys(f"{_with_article(n)[0].upper()}{_with_article(n)[1:]}." for n in names)
    )


def dual_tower_retrieval(
    context: CaptionContext,
    n: int = 3,
    pool: tuple[str, ...] | list[str] = POOLS,
    epochs: int = 30,
    embed_dim: int = 256,
    hidden_dim: int = 512,
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    from cart_pipeline.core.retrieval.dual_tower import (
        DualTowerConfig,
        embed_items,
        embed_texts,
        train_dual_tower,
    )

    encoder = context.text_encoder
    if encoder is None:
        raise ValueError(
            "dual_tower_retrieval needs the text encoder (CaptionContext.text_encoder)"
        )
    unknown = set(pool) - set(POOLS)
    if unknown:
        raise ValueError(f"unknown text pool(s) {sorted(unknown)}; known: {list(POOLS)}")
    candidates = context.candidates.reset_index(drop=True)
    queries = context.train_queries
    if queries.empty:
        return context.skip_all("no human queries of train items to learn from")

    row_of = pd.Series(np.arange(len(candidates)), index=candidates.item_id)
    texts = list(dict.fromkeys(queries.text))
    text_features = encoder.encode(texts)  # (U, D) distinct train texts
    pair_text = pd.Index(texts).get_indexer(queries.text)
    config = DualTowerConfig(
        text_dim=text_features.shape[1],
        item_dim=context.features.shape[1],
        embed_dim=embed_dim,
        hidden_dim=hidden_dim,
        epochs=epochs,
        patience=epochs,  # no validation set here (captioners never read held-out queries)
        seed=context.seed,
    )
    tower, _ = train_dual_tower(
        text_features[pair_text], row_of.loc[queries.item_id].to_numpy(), context.features, config
    )

    pool_texts = (texts if "train_texts" in pool else []) + (
        imagenet_descriptions() if "imagenet_classes" in pool else []
    )
    pool_texts = list(dict.fromkeys(pool_texts))
    pool_features = (
        np.concatenate([text_features, encoder.encode(pool_texts[len(texts) :])])
        if "train_texts" in pool
        else encoder.encode(pool_texts)
    )
    scores = (
        embed_items(tower, context.features) @ embed_texts(tower, pool_features).T
    ).numpy()  # (N, pool)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    rows = [
        (item, pool_texts[j], SOURCE)
        for item, picks in zip(candidates.item_id, top, strict=True)
        for j in picks
    ]
    return pd.DataFrame(rows, columns=CAPTION_COLUMNS), []
