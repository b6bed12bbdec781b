"""The floor baseline: look the query up among the training pairs, no training at all.

An item's score is a soft vote over its training texts (human + pseudo-queries), in the
frozen text encoder's space:

    score(q, item) = τ · log Σ_{t ∈ texts(item)} exp(cos(q, t) / τ)

τ → 0 is the max cosine (nearest training text), large τ approaches a sum of similarities. A
generative retriever trained on those pairs must clear this: otherwise it has not learned more
than the pairs say. τ is chosen on the validation queries (``fit_temperature``).

The same scores rank a few candidates per query (another system's beam): ``rescore``, in
O(candidates × texts per item), reads only the candidates' texts.
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

    def _item_rows(self) -> torch.Tensor:
        """(N, M) the rows of each item's texts, padded with -1 (M: the most texts of an item)."""
        if getattr(self, "_rows", None) is None:
            order = np.argsort(self.pair_items, kind="stable")
            counts = np.bincount(self.pair_items, minlength=self.n_items)
            slot = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
            rows = np.full((self.n_items, max(int(counts.max(initial=0)), 1)), -1, np.int64)
            rows[self.pair_items[order], slot] = order
            self._rows = torch.from_numpy(rows)
        return self._rows

    def nbytes_per_item(self) -> float:
        """Memory a rerank by this lookup keeps beside an index: the texts' vectors per item."""
        return self.text_embeddings.nbytes / max(self.n_items, 1)

    @torch.inference_mode()
    def rescore(
        self, query_embeddings: np.ndarray, candidates: np.ndarray, batch_size: int = 64
    ) -> np.ndarray:
        """(Q, D) queries and (Q, B) candidate items (-1 = none) -> (Q, B) scores, -inf where
        there is no candidate or it has no training text. Reads only the candidates' texts."""
        tau = float(self.temperature)
        texts = torch.from_numpy(self.text_embeddings)
        item_rows = self._item_rows()
        out = []
        for start in range(0, len(query_embeddings), batch_size):
            q = torch.from_numpy(
                np.ascontiguousarray(query_embeddings[start : start + batch_size], np.float32)
            )  # (b, D)
            cand = torch.from_numpy(np.asarray(candidates[start : start + batch_size]))  # (b, B)
            rows = item_rows[cand.clamp(min=0)]  # (b, B, M)
            cos = torch.einsum("bd,bkmd->bkm", q, texts[rows.clamp(min=0)]).double()
            logits = (cos / tau).masked_fill(rows < 0, -torch.inf)
            score = tau * torch.logsumexp(logits, dim=-1)  # (b, B)
            out.append(score.masked_fill(cand < 0, -torch.inf).numpy())
        return np.concatenate(out) if out else np.zeros((0, candidates.shape[1]))

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


def lookup_from_training_pairs(
    training_pairs,
    item_ids: np.ndarray,
    query_features,
    pseudo_query_features,
) -> tuple[PairLookup, tuple[np.ndarray, np.ndarray]]:
    """The pair lookup over the training texts of ``item_ids`` (rows in that order; tables as
    the pipeline saves them), and the validation texts' (features, item rows) its temperature
    is chosen on."""
    from cart_pipeline.core.pairs import index_pairs, text_features_of

    pairs, rows = index_pairs(training_pairs, item_ids)
    val = pairs.is_validation.to_numpy()
    lookup = PairLookup.from_pairs(
        text_features_of(pairs.query_id[~val], query_features, pseudo_query_features),
        rows[~val],
        len(item_ids),
    )
    return lookup, (text_features_of(pairs.query_id[val], query_features), rows[val])
