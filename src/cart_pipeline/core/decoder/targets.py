"""Soft identifier targets: a distribution over items per training pair, and what it means
for the token targets teacher forcing sees.

The source (``decoder_training.soft_targets.source``): ``dual_tower_targets``, the dual
tower's top-K items for the pair's text, a softmax of cosine / temperature: distillation, so
the decoder inherits the item tower's generalisation to items it knows only through
pseudo-queries. ``prefix_soft_targets`` turns it into per-position token distributions along
the trie; ``target_summary`` says how much of its mass stays on the pairs' own items.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def prefix_soft_targets(
    identifiers: torch.Tensor,
    target_items: torch.Tensor,
    candidates: torch.Tensor,
    probs: torch.Tensor,
    vocab_size: int,
) -> torch.Tensor:
    """A distribution over items -> the token targets teacher forcing sees, (B, L, V).

    identifiers (N, L); target_items (B,); candidates (B, K) item indices (-1 = none) with
    probs (B, K). At position i the target is the candidates' mass that shares the target's
    prefix t_<i, split by their token i: the item distribution factorised along the trie, so
    the decoder is taught p(t_i | t_<i) of the teacher. Where no candidate shares the prefix
    the target is the target item's own token.
    """
    own = identifiers[target_items]  # (B, L)
    cand = identifiers[candidates.clamp(min=0)]  # (B, K, L)
    mass = probs * (candidates >= 0)
    B, L = own.shape
    out = torch.zeros(B, L, vocab_size, dtype=probs.dtype, device=probs.device)
    for i in range(L):
        out[:, i].scatter_add_(1, cand[:, :, i], mass)
        mass = mass * (cand[:, :, i] == own[:, i : i + 1])  # still on the target's path
    total = out.sum(-1, keepdim=True)
    one_hot = F.one_hot(own, vocab_size).to(out.dtype)
    return torch.where(total > 0, out / total.clamp(min=1e-12), one_hot)


def dual_tower_targets(
    tower,
    text_features: np.ndarray,
    item_features: np.ndarray,
    top_k: int,
    temperature: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, K) items and probabilities: the tower's top-K for each text (``item_features`` rows
    in identifier order); ``temperature`` None = the tower's own learned temperature."""
    from cart_pipeline.core.retrieval.dual_tower import score_items

    scores = torch.from_numpy(score_items(tower, text_features, item_features))  # (P, N)
    temperature = float(1 / tower.scale().detach()) if temperature is None else float(temperature)
    top, items = scores.topk(min(top_k, scores.shape[1]), dim=1)
    return items, torch.softmax(top / temperature, dim=1)


def target_summary(
    items: torch.Tensor, probs: torch.Tensor, target_items: torch.Tensor
) -> dict[str, float]:
    """Mean over pairs of the soft target's mass on the pair's own item and of its entropy
    (nats): items, probs (P, K) as the sources return them, target_items (P,). With weight λ
    the decoder is taught 1 − λ + λ · own_item_mass on the item its text belongs to."""
    own = (items == torch.as_tensor(target_items)[:, None]) & (items >= 0)  # (P, K)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(1)  # (P,)
    return {
        "own_item_mass": float((probs * own).sum(1).mean()),
        "entropy_nats": float(entropy.mean()),
    }
