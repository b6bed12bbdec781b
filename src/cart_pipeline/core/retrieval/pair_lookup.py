"""The floor baseline: look the query up among the training pairs, no training at all.

An item's score is a soft vote over its training texts (human + pseudo-queries), in the
frozen text encoder's space:

    score(q, item) = τ · log Σ_{t ∈ texts(item)} exp(cos(q, t) / τ)

τ → 0 is the max cosine (nearest training text), large τ approaches a sum of similarities. A
generative retriever trained on those pairs must clear this: otherwise it has not learned more
than the pairs say. τ is chosen on the validation queries (``fit_temperature``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cart_pipeline.core.metrics import pessimistic_ranks, top_k_with_ties


@dataclass
class PairLookup:
    text_embeddings: np.ndarray  # (P, D) L2-normalised, one row per distinct (item, text)
    pair_items: np.ndarray  # (P,) item index of each row
    n_items: int
    temperature: float = 0.05

    @classmethod
    def from_pairs(
        cls,
        text_embeddings: np.ndarray,
        pair_items: np.ndarray,
        n_items: int,
        temperature: float = 0.05,
    ) -> PairLookup:
        """Pairs may repeat a text for the same item (a human query equal to a caption): one vote each."""
        pair_items = np.asarray(pair_items, dtype=np.int64)
        _, first = np.unique(
            np.column_stack([pair_items, _row_keys(text_embeddings)]), axis=0, return_index=True
        )
        first = np.sort(first)
        return cls(
            np.ascontiguousarray(text_embeddings[first], np.float32),
            pair_items[first],
            int(n_items),
            float(temperature),
        )

    @torch.inference_mode()
    def scores(
        self, query_embeddings: np.ndarray, temperature: float | None = None, batch_size: int = 1024
    ) -> np.ndarray:
        """(Q, D) -> (Q, N) scores; items with no training text score -inf."""
        tau = float(temperature or self.temperature)
        texts = torch.from_numpy(self.text_embeddings)
        items = torch.from_numpy(self.pair_items)
        out = []
        for start in range(0, len(query_embeddings), batch_size):
            q = torch.from_numpy(
                np.ascontiguousarray(query_embeddings[start : start + batch_size], np.float32)
            )
            logits = (q @ texts.T).double() / tau  # (b, P)
            # log-sum-exp per item, stable: subtract each item's max before exponentiating
            index = items.expand_as(logits)
            peak = torch.full(
                (len(q), self.n_items), -torch.inf, dtype=logits.dtype
            ).scatter_reduce(1, index, logits, "amax")
            total = torch.zeros_like(peak).scatter_add(
                1, index, (logits - peak.gather(1, index)).exp()
            )
            out.append((tau * (peak + total.log())).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_items))

    def search(self, query_embeddings: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, K') indices and scores, ties at the cut-off kept (see ``top_k_with_ties``)."""
        return top_k_with_ties(self.scores(query_embeddings), top_k)

    def fit_temperature(
        self,
        val_embeddings: np.ndarray,
        val_items: np.ndarray,
        grid: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
    ) -> dict[float, float]:
        """Set τ to the grid value with the best validation MRR@10 (ties: the smaller τ);
        returns MRR@10 per τ."""
        results = {}
        for tau in grid:
            ranks = pessimistic_ranks(self.scores(val_embeddings, tau), np.asarray(val_items))
            results[float(tau)] = float(np.where(ranks <= 10, 1.0 / ranks, 0.0).mean())
        self.temperature = max(results, key=lambda t: (results[t], -t))
        return results


def _row_keys(matrix: np.ndarray) -> np.ndarray:
    """An integer key per row, equal for equal rows (for de-duplication)."""
    _, keys = np.unique(np.ascontiguousarray(matrix), axis=0, return_inverse=True)
    return keys.reshape(-1)
