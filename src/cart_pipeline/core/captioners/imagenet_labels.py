"""`imagenet_labels`: the image classifier's top ImageNet classes put into natural templates.

The EfficientNet-Lite0 head already ran in the feature stage (its top-k classes are stored
with the features), so this captioner is pure string work.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .context import CAPTION_COLUMNS, CaptionContext

SOURCE = "pseudo:imagenet_labels"


def _with_article(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _synonyms(class_name: str) -> list[str]:
    """'garbage truck, dustcart' -> ['garbage truck', 'dustcart']."""
    return [s.strip() for s in class_name.split(",") if s.strip()]


def label_captions(top_names: list[list[str]], top_probs: np.ndarray, n: int) -> list[list[str]]:
    """Per item, up to `n` distinct captions from its ranked class names (each a synonym list)."""
    captions = []
    for names, probs in zip(top_names, top_probs, strict=True):
        first, *rest = names
        candidates = [f"a picture of {_with_article(first[0])}"]
        if len(first) > 1:
            candidates.append(f"a picture of {_with_article(first[1])}")
        # a second class only when the classifier is not sure of the first
        if rest and probs[0] < 0.9:
            candidates.append(f"{_with_article(first[0])} or {_with_article(rest[0][0])}")
        candidates.append(first[0])
        candidates += [
            f"something like {_with_article(other[0])}"
            for other, p in zip(rest, probs[1:], strict=False)
            if p >= 0.05
        ]
        captions.append(list(dict.fromkeys(candidates))[:n])
    return captions


def imagenet_labels(
    context: CaptionContext, n: int = 3
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    from cart_pipeline.core.encoders.image import imagenet_class_names

    if context.class_top is None or context.class_prob is None:
        return context.skip_all(
            "no ImageNet predictions (the modality's encoder has no classifier head)"
        )
    names = imagenet_class_names()
    top_names = [[_synonyms(names[c]) for c in row] for row in np.asarray(context.class_top)]
    captions = label_captions(top_names, np.asarray(context.class_prob), n)
    rows = [
        (item, text, SOURCE)
        for item, texts in zip(context.candidates.item_id, captions, strict=True)
        for text in texts
    ]
    return pd.DataFrame(rows, columns=CAPTION_COLUMNS), []
