"""Dual-tower baseline: projection heads on frozen text and candidate features.

Both towers read the same frozen features CART uses (MiniLM text embeddings, the modality
encoder's candidate embeddings) and are trained with InfoNCE and a learned temperature on
exactly CART's training pairs. Search is exact cosine over the whole corpus.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cart_pipeline.core.checkpoint import read_checkpoint, to_checkpoint
from cart_pipeline.core.config import check_settings, setting
from cart_pipeline.core.metrics import pessimistic_ranks, top_k_with_ties
from cart_pipeline.core.seeding import seed_everything

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "cart-dual-tower/1"


@dataclass
class DualTowerConfig:
    text_dim: int = 384
    item_dim: int = 1280
    embed_dim: int = setting(256, ge=1)
    hidden_dim: int = setting(512, ge=1)
    dropout: float = setting(0.1, ge=0, lt=1)
    epochs: int = setting(60, ge=1)
    batch_size: int = setting(256, ge=1)
    lr: float = setting(1e-3, gt=0)
    weight_decay: float = setting(1e-4, ge=0)
    # keep the epoch with the best validation MRR@10; stop after `patience` epochs without one
    patience: int = setting(8, ge=1)
    # Up to this corpus size every step scores the full corpus (no false negatives from
    # in-batch sampling); above it, negatives are the batch's items.
    full_softmax_max_items: int = 50_000
    seed: int = 0

    def __post_init__(self) -> None:
        check_settings(self, "dual_tower")


class ProjectionHead(nn.Module):
    """Frozen feature -> residual MLP -> L2-normalised joint embedding."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_dim) -> (B, out_dim)
        return F.normalize(self.linear(x) + self.mlp(x), dim=-1)


class DualTower(nn.Module):
    def __init__(self, config: DualTowerConfig):
        super().__init__()
        self.config = config
        self.text_head = ProjectionHead(
            config.text_dim, config.hidden_dim, config.embed_dim, config.dropout
        )
        self.item_head = ProjectionHead(
            config.item_dim, config.hidden_dim, config.embed_dim, config.dropout
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's init

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100)).exp()


def train_dual_tower(
    text_features: np.ndarray,
    pair_items: np.ndarray,
    item_features: np.ndarray,
    config: DualTowerConfig,
    val_text_features: np.ndarray | None = None,
    val_items: np.ndarray | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[DualTower, list[dict]]:
    """InfoNCE on (text, item index) pairs; keeps the epoch with the best validation MRR@10
    (ties ranked against the relevant item) and stops after ``patience`` epochs without one.

    text_features (P, Dt), pair_items (P,) indices into item_features (N, Di). Trains on
    ``device``; the model comes back on the CPU (scoring and checkpoints happen there).
    """
    seed_everything(config.seed)
    model = DualTower(config).to(device)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    # copies: the features may be read-only views of a loaded file
    texts = torch.tensor(np.asarray(text_features), dtype=torch.float32, device=device)
    targets = torch.tensor(np.asarray(pair_items), dtype=torch.int64, device=device)
    items = torch.tensor(np.asarray(item_features), dtype=torch.float32, device=device)
    full_softmax = len(items) <= config.full_softmax_max_items
    generator = torch.Generator().manual_seed(config.seed)

    history, best, best_state, stale = [], -math.inf, None, 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(texts), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            query = model.text_head(texts[batch])  # (B, E)
            if full_softmax:
                keys, labels = model.item_head(items), targets[batch]  # (N, E), (B,)
                loss = F.cross_entropy(model.scale() * query @ keys.T, labels)
            else:
                unique, labels = torch.unique(targets[batch], return_inverse=True)
                keys = model.item_head(items[unique])  # (U, E)
                logits = model.scale() * query @ keys.T  # (B, U)
                # item->text direction: average over each item's positives in the batch
                positives = F.one_hot(labels, len(unique)).T.float()  # (U, B)
                item_to_text = -(positives * logits.T.log_softmax(-1)).sum(-1) / positives.sum(-1)
                loss = 0.5 * (F.cross_entropy(logits, labels) + item_to_text.mean())
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        record = {
            "epoch": epoch,
            "loss": total / len(texts),
            "temperature": float(1 / model.scale().detach()),
            "seconds": time.perf_counter() - started,
        }
        if val_text_features is not None and len(val_text_features):
            scores = score_items(model.cpu(), val_text_features, item_features)
            model.to(device)  # (validation on the CPU: a no-op there)
            ranks = pessimistic_ranks(scores, np.asarray(val_items))
            record.update(
                val_r1=float((ranks <= 1).mean()),
                val_r10=float((ranks <= 10).mean()),
                val_mrr10=float(np.where(ranks <= 10, 1.0 / ranks, 0.0).mean()),
            )
        history.append(record)
        if on_epoch:
            on_epoch(epoch, record)
        score = record.get("val_mrr10", -record["loss"])
        if score > best:
            best, best_state, stale = (
                score,
                {k: v.clone() for k, v in model.state_dict().items()},
                0,
            )
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.cpu()
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history


def _read_only_tensor(array: np.ndarray) -> torch.Tensor:
    """(N, D) float32 tensor over ``array`` without a copy. Features read from parquet are
    Arrow-backed and not writable; the embed functions only read them (inference mode), so
    torch's warning about writing to such a tensor does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


@torch.inference_mode()
def embed_items(
    model: DualTower, item_features: np.ndarray, batch_size: int = 8192
) -> torch.Tensor:
    model.eval()
    items = _read_only_tensor(item_features)
    if not len(items):  # e.g. no test query of a modality put any item in CART's beams
        return torch.zeros((0, model.config.embed_dim))
    return torch.cat(
        [model.item_head(items[s : s + batch_size]) for s in range(0, len(items), batch_size)]
    )


@torch.inference_mode()
def embed_texts(model: DualTower, text_features: np.ndarray) -> torch.Tensor:
    model.eval()
    return model.text_head(_read_only_tensor(text_features))


@torch.inference_mode()
def score_items(
    model: DualTower,
    text_features: np.ndarray,
    item_features: np.ndarray | None = None,
    item_embeddings: torch.Tensor | None = None,
) -> np.ndarray:
    """(Q, N) cosine of every query with every item in the joint space."""
    keys = item_embeddings if item_embeddings is not None else embed_items(model, item_features)
    return (embed_texts(model, text_features) @ keys.T).numpy()


def search(
    model: DualTower,
    text_features: np.ndarray,
    item_features: np.ndarray | None = None,
    top_k: int = 10,
    item_embeddings: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine search: (Q, K') item indices and scores, best first, K' >= top_k holding
    every item tied with the top_k-th (see ``top_k_with_ties``); -1 / -inf padded."""
    return top_k_with_ties(score_items(model, text_features, item_features, item_embeddings), top_k)


def dual_tower_to_checkpoint(model: DualTower, extra: dict | None = None) -> dict:
    """Model + metadata (item ids, training history) in the convention of core/checkpoint.py."""
    return to_checkpoint(CHECKPOINT_FORMAT, asdict(model.config), model, extra)


def dual_tower_from_checkpoint(checkpoint: dict) -> DualTower:
    config, state_dict, _ = read_checkpoint(checkpoint, CHECKPOINT_FORMAT)
    model = DualTower(DualTowerConfig(**config))
    model.load_state_dict(state_dict)
    return model.eval()


@torch.inference_mode()
def rerank(
    model: DualTower, rankings: pd.DataFrame, text_features: np.ndarray, item_features: np.ndarray
) -> pd.DataFrame:
    """Another system's candidates reordered by the dual-tower cosine: O(candidates) work.

    rankings: long table (query_id, rank, item_id, score); text_features (Q, H) rows in the
    order of ``rankings.query_id.unique()``, item_features (I, D) in the order of
    ``rankings.item_id.unique()`` (only the candidates are embedded). Returns the same rows
    with ``score`` = cosine and ``rank`` renumbered by it (a stable sort: equal cosines keep the
    first system's order).
    """
    queries, items = pd.Index(rankings.query_id.unique()), pd.Index(rankings.item_id.unique())
    text = embed_texts(model, text_features)  # (Q, E)
    keys = embed_items(model, item_features)  # (I, E)
    score = (
        text[queries.get_indexer(rankings.query_id)] * keys[items.get_indexer(rankings.item_id)]
    ).sum(1)
    reranked = rankings.assign(score=score.numpy().astype(np.float64))
    reranked = reranked.sort_values(["query_id", "score"], ascending=[True, False], kind="stable")
    reranked["rank"] = reranked.groupby("query_id").cumcount() + 1
    return reranked.reset_index(drop=True)


@dataclass
class DualTowerIndex:
    """The dense baseline's index: the item tower's embeddings of the whole corpus, searched
    exactly; ``search`` mirrors :meth:`CartIndex.search` (indices, scores, timings)."""

    model: DualTower
    item_ids: np.ndarray  # (N,)
    item_embeddings: torch.Tensor  # (N, E)
    version: str | None = None  # the Kedro save version of the checkpoint

    @classmethod
    def from_checkpoint(
        cls, checkpoint: dict, item_ids: np.ndarray, item_features: np.ndarray
    ) -> DualTowerIndex:
        model = dual_tower_from_checkpoint(checkpoint)
        return cls(
            model,
            np.asarray(item_ids),
            embed_items(model, item_features),
            checkpoint.get("saved_version"),
        )

    @torch.inference_mode()
    def rescore(self, text_features: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The cosine of each query (Q, H) with its candidates, rows (Q, B) into the corpus
        (-1 = none, scored -inf): reranking another system's candidates costs O(B)."""
        text = embed_texts(self.model, text_features)  # (Q, E)
        keys = self.item_embeddings[torch.as_tensor(np.maximum(rows, 0))]  # (Q, B, E)
        cosines = torch.einsum("qe,qbe->qb", text, keys).double().numpy()
        return np.where(rows >= 0, cosines, -np.inf)

    def search(
        self,
        text_features: np.ndarray,
        top_k: int = 10,
        batch_size: int = 100,
        encode: Callable[[slice], object] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """(Q, K') item indices and cosines, best first, every item tied with a row's top_k-th
        kept (-1 / -inf padded); plus seconds spent encoding and searching.

        The search reads ``text_features`` (the stored query vectors); ``encode(batch)``, if
        given, is called per batch of queries only so that encoding is timed batch by batch
        exactly as CART's search times it."""
        found, scores, encode_s, search_s = [], [], 0.0, 0.0
        for start in range(0, len(text_features), batch_size):
            batch = slice(start, start + batch_size)
            t0 = time.perf_counter()
            if encode is not None:
                encode(batch)
            t1 = time.perf_counter()
            top, score = search(
                self.model, text_features[batch], top_k=top_k, item_embeddings=self.item_embeddings
            )
            t2 = time.perf_counter()
            encode_s, search_s = encode_s + t1 - t0, search_s + t2 - t1
            found.append(top)
            scores.append(score)
        width = max((f.shape[1] for f in found), default=0)  # ties make batches differ in width
        pad = lambda a, value: np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=value)  # noqa: E731
        return (
            np.concatenate([pad(f, -1) for f in found]) if found else np.zeros((0, 0), np.int64),
            np.concatenate([pad(s, -np.inf) for s in scores]) if scores else np.zeros((0, 0)),
            {"encode_s": encode_s, "decode_s": search_s},
        )
