"""CART vs its baselines on the held-out test queries, per modality and overall.

Systems: ``cart`` (beam search), two hybrids that reorder CART's beam — ``cart_rerank`` by
the dual-tower cosine, ``cart_lookup_rerank`` by the pair lookup's soft vote over each
candidate's training texts (O(beam) and O(beam × texts per item) work per query, flat in the
corpus size; the latter keeps the texts' vectors beside the index) — ``dual_tower`` (exact
dense search), ``pair_lookup`` (the no-training floor) and, where the modality's encoder embeds
text into its own space (CLIP, CLAP), ``zero_shot``: that encoder's own search, no training. Every metric carries a 95 % bootstrap CI; CART is
compared with each baseline by a paired bootstrap and a sign test.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from cart_pipeline.core.device import stage_device
from cart_pipeline.core.encoders import TEXT_ALIGNED
from cart_pipeline.core.metrics import (
    metrics_by_relevance,
    paired_comparison,
    rankings_frame,
    relevant_ranks,
    same_description_relevance,
    top_k_with_ties,
)
from cart_pipeline.core.pairs import text_features_of
from cart_pipeline.core.retrieval.cart import CartIndex
from cart_pipeline.core.retrieval.dual_tower import (
    DualTowerIndex,
    dual_tower_from_checkpoint,
    rerank,
)
from cart_pipeline.core.retrieval.pair_lookup import lookup_from_training_pairs
from cart_pipeline.core.tables import column_to_matrix
from cart_pipeline.pipelines.encoders import load_encoder
from cart_pipeline.pipelines.tracking import log_metrics
from cart_pipeline.reporting.charts import recall_chart

logger = logging.getLogger(__name__)
SYSTEMS = ("cart", "cart_rerank", "cart_lookup_rerank", "dual_tower", "pair_lookup", "zero_shot")
BASELINES = ("dual_tower", "pair_lookup", "zero_shot")
HYBRIDS = ("cart_rerank", "cart_lookup_rerank")  # CART's beam, reordered
MODEL_OF_SYSTEM = {"cart_decoder": "cart", "dual_tower": "dual_tower"}  # catalog name -> system


def heldout_queries(queries: pd.DataFrame, corpus_item_ids, split: str = "test") -> pd.DataFrame:
    """Human queries of `split` items that made it into the index."""
    held_out = queries[queries.split == split]
    kept = held_out[held_out.item_id.isin(corpus_item_ids)]
    if len(kept) < len(held_out):
        logger.warning(
            "%d %s queries dropped: their item was rejected before indexing",
            len(held_out) - len(kept),
            split,
        )
    return kept.reset_index(drop=True)


def rank_with_cart(
    cart_decoder: dict,
    queries: pd.DataFrame,
    params: dict[str, Any],
    text_encoder_spec: dict[str, Any],
    device: str,
) -> tuple[pd.DataFrame, dict]:
    device = stage_device(params, device)
    index = CartIndex.from_checkpoint(cart_decoder, load_encoder(text_encoder_spec, device), device)
    if params["int8"]:
        index = index.int8()
    test = heldout_queries(queries, index.item_ids)
    top, scores, timing = search_cart(index, test, params)
    validation = dict(index.metadata.get("validation", {}))
    if params["validation_ranks"]:  # opt-in: what the lever runner pools over runs
        validation |= validation_ranks(index, queries, params)
    info = {
        **_throughput(len(test), timing),
        "validation": validation,
        "model_version": index.version,
    }
    return rankings_frame(test.query_id.tolist(), index.item_ids, top, scores), info


def search_cart(index: CartIndex, queries: pd.DataFrame, params: dict[str, Any]):
    """(top, scores, timing) of ``queries`` with the evaluation's beam settings."""
    return index.search(
        queries.text.tolist(),
        top_k=int(params["top_k"]),
        beam_size=int(params["beam_size"]),
        batch_size=int(params["batch_size"]),
    )


def validation_ranks(index: CartIndex, queries: pd.DataFrame, params: dict[str, Any]) -> dict:
    """The kept checkpoint's rank of each validation query's item, searched as the test queries
    (untimed; ties against the item): what the lever runner pools over collections and runs to
    compare two settings query by query (experiments/levers.py)."""
    validation = heldout_queries(queries, index.item_ids, "validation")
    if validation.empty:
        return {}
    top, scores, _ = search_cart(index, validation, params)
    rankings = rankings_frame(validation.query_id.tolist(), index.item_ids, top, scores)
    ranks = relevant_ranks(rankings, validation[["query_id", "item_id"]], int(params["top_k"]))
    return {
        "query_ids": validation.query_id.tolist(),
        "ranks": ranks.loc[validation.query_id].tolist(),
    }


def rank_with_dual_tower(
    dual_tower: dict,
    queries: pd.DataFrame,
    query_features: pd.DataFrame,
    candidate_features: pd.DataFrame,
    params: dict[str, Any],
    text_encoder_spec: dict[str, Any],
) -> tuple[pd.DataFrame, dict]:
    index = DualTowerIndex.from_checkpoint(
        dual_tower,
        candidate_features.item_id.to_numpy(),
        column_to_matrix(candidate_features.embedding),
    )
    test = heldout_queries(queries, index.item_ids)
    encoder = load_encoder(text_encoder_spec)
    found, scores, timing = index.search(
        text_features_of(test.query_id, query_features),
        top_k=int(params["top_k"]),
        batch_size=int(params["batch_size"]),
        encode=lambda batch: encoder.encode(test.text.iloc[batch].tolist()),  # timed, as CART's
    )
    rankings = rankings_frame(test.query_id.tolist(), index.item_ids, found, scores)
    selected = max(
        dual_tower["extra"].get("history") or [{}], key=lambda h: h.get("val_mrr10", -1.0)
    )
    validation = {k.removeprefix("val_"): v for k, v in selected.items() if k.startswith("val_")}
    return rankings, {
        **_throughput(len(test), timing),
        "validation": validation,
        "model_version": index.version,
    }


def rank_with_pair_lookup(
    training_pairs: pd.DataFrame,
    queries: pd.DataFrame,
    query_features: pd.DataFrame,
    pseudo_query_features: pd.DataFrame,
    candidate_features: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, dict]:
    """The floor: a soft vote over each item's training texts, τ chosen on validation."""
    item_ids = candidate_features.item_id.to_numpy()
    lookup, validation = lookup_from_training_pairs(
        training_pairs, item_ids, query_features, pseudo_query_features
    )
    by_temperature = lookup.fit_temperature(
        *validation, tuple(params["pair_lookup"]["temperatures"])
    )
    test = heldout_queries(queries, item_ids)
    started = time.perf_counter()
    top, scores = lookup.search(
        text_features_of(test.query_id, query_features), int(params["top_k"])
    )
    seconds = time.perf_counter() - started
    logger.info(
        "pair lookup: temperature %.3g chosen on validation (MRR@10 by temperature %s)",
        lookup.temperature,
        by_temperature,
    )
    info = {
        **_throughput(len(test), {"encode_s": 0.0, "decode_s": seconds}),
        "temperature": lookup.temperature,
    }
    info["validation"] = {"mrr10": by_temperature[lookup.temperature]}
    info["validation_mrr10_by_temperature"] = {str(k): v for k, v in by_temperature.items()}
    return rankings_frame(test.query_id.tolist(), item_ids, top, scores), info


def rank_zero_shot(
    queries: pd.DataFrame,
    candidate_features: pd.DataFrame,
    feature_params: dict[str, Any],
    params: dict[str, Any],
    modality: str,
    device: str,
) -> tuple[pd.DataFrame, dict]:
    """The aligned encoder's own search (CLIP, CLAP): exact cosine of the query's text
    embedding with the items' embeddings, no training. Not available (an empty table and the
    reason) when the modality's encoder cannot embed text."""
    spec = feature_params["encoders"][modality]
    if spec["name"] not in TEXT_ALIGNED:
        reason = f"the {modality} encoder {spec['name']!r} embeds no text"
        return rankings_frame([], np.array([]), np.zeros((0, 0), np.int64), np.zeros((0, 0))), {
            "available": False,
            "reason": reason,
        }
    encoder = load_encoder(spec, stage_device(feature_params, device))
    item_ids = candidate_features.item_id.to_numpy()
    items = torch.from_numpy(column_to_matrix(candidate_features.embedding))  # (N, D) unit norm
    test = heldout_queries(queries, item_ids)
    started = time.perf_counter()
    text = torch.from_numpy(encoder.encode_text(test.text.tolist()))  # (Q, D) unit norm
    encoded = time.perf_counter()
    top, scores = top_k_with_ties((text @ items.T).double().numpy(), int(params["top_k"]))
    seconds = {"encode_s": encoded - started, "decode_s": time.perf_counter() - encoded}
    info = {**_throughput(len(test), seconds), "available": True, "encoder": encoder.name}
    return rankings_frame(test.query_id.tolist(), item_ids, top, scores), info


def rerank_cart_with_dual_tower(
    cart_rankings: pd.DataFrame,
    cart_timing: dict,
    dual_tower: dict,
    query_features: pd.DataFrame,
    candidate_features: pd.DataFrame,
) -> tuple[pd.DataFrame, dict]:
    """CART's beam, reordered by the dual-tower cosine (the candidate set stays CART's)."""
    started = time.perf_counter()
    features = candidate_features.set_index("item_id").embedding
    reranked = rerank(
        dual_tower_from_checkpoint(dual_tower),
        cart_rankings,
        text_features_of(pd.Index(cart_rankings.query_id.unique()), query_features),
        column_to_matrix(features.loc[cart_rankings.item_id.unique()]),
    )
    seconds = time.perf_counter() - started
    timing = {
        **cart_timing,
        "search_seconds": cart_timing["search_seconds"] + seconds,
        "rerank_seconds": seconds,
    }
    timing.pop("validation", None)  # CART's selection metric, not the reranked system's
    n = cart_rankings.query_id.nunique()
    timing["qps_search"] = (
        n / timing["search_seconds"] if timing["search_seconds"] else float("nan")
    )
    timing["qps_with_encoding"] = (
        n / (timing["search_seconds"] + timing["encoding_seconds"]) if n else float("nan")
    )
    return reranked, timing


def rerank_cart_with_pair_lookup(
    cart_rankings: pd.DataFrame,
    cart_timing: dict,
    pair_lookup_timing: dict,
    training_pairs: pd.DataFrame,
    query_features: pd.DataFrame,
    pseudo_query_features: pd.DataFrame,
    candidate_features: pd.DataFrame,
) -> tuple[pd.DataFrame, dict]:
    """CART's beam, reordered by the pair lookup's soft vote over each candidate's training
    texts (the temperature the lookup chose on validation); the candidate set stays CART's."""
    item_ids = candidate_features.item_id.to_numpy()
    lookup, _ = lookup_from_training_pairs(
        training_pairs, item_ids, query_features, pseudo_query_features
    )
    lookup.temperature = float(pair_lookup_timing["temperature"])
    queries = pd.Index(cart_rankings.query_id.unique())
    beams = cart_rankings.sort_values(["query_id", "rank"]).groupby("query_id", sort=False)
    width = int(beams.size().max())
    candidates = np.full((len(queries), width), -1, dtype=np.int64)
    row_of = pd.Series(np.arange(len(item_ids)), index=item_ids)
    for query_id, beam in beams:
        candidates[queries.get_loc(query_id), : len(beam)] = row_of.loc[beam.item_id].to_numpy()
    started = time.perf_counter()
    scores = lookup.rescore(text_features_of(queries, query_features), candidates)
    seconds = time.perf_counter() - started
    order = np.argsort(-scores, axis=1, kind="stable")  # equal votes keep CART's order
    top = np.take_along_axis(candidates, order, 1)
    rankings = rankings_frame(queries.tolist(), item_ids, top, np.take_along_axis(scores, order, 1))
    timing = {
        **cart_timing,
        "search_seconds": cart_timing["search_seconds"] + seconds,
        "rerank_seconds": seconds,
        "bytes_per_item": lookup.nbytes_per_item(),
    }
    timing.pop("validation", None)  # CART's selection metric, not the reranked system's
    n = len(queries)
    timing["qps_search"] = (
        n / timing["search_seconds"] if timing["search_seconds"] else float("nan")
    )
    timing["qps_with_encoding"] = (
        n / (timing["search_seconds"] + timing["encoding_seconds"]) if n else float("nan")
    )
    return rankings, timing


def _throughput(n_queries: int, timing: dict) -> dict:
    search_s, encode_s = timing["decode_s"], timing["encode_s"]
    return {
        "qps_search": n_queries / search_s if search_s else float("nan"),
        "qps_with_encoding": n_queries / (search_s + encode_s)
        if search_s + encode_s
        else float("nan"),
        "search_seconds": search_s,
        "encoding_seconds": encode_s,
    }


def evaluate_modality(
    queries: pd.DataFrame,
    semantic_ids: pd.DataFrame,
    params: dict[str, Any],
    modality: str,
    seed: int,
    **systems: Any,
) -> dict:
    """Every system's metrics (strict and same-description relevance, with CIs), the paired
    comparisons of CART with each baseline, and the per-query ranks `summarise` pools."""
    test = heldout_queries(queries, semantic_ids.item_id)
    relevance = {
        "strict": test[["query_id", "item_id"]],
        "same_description": same_description_relevance(
            test, queries[queries.source == "human"], semantic_ids.item_id.to_numpy()
        ),
    }
    depth, n_boot = int(params["top_k"]), int(params["bootstrap_samples"])
    result: dict[str, Any] = {
        "modality": modality,
        "corpus_size": int(len(semantic_ids)),
        "systems": {},
        "comparisons": {},
    }
    ranks: dict[str, dict[str, np.ndarray]] = {}
    for system in SYSTEMS:
        rankings, info = systems[f"{system}_rankings"], dict(systems[f"{system}_timing"])
        if info.pop("available", True) is False:  # e.g. zero_shot without a text-aligned encoder
            result.setdefault("unavailable", {})[system] = info["reason"]
            continue
        info.pop("model_version", None)  # recorded once, in result["models"]
        ranks[system] = {
            kind: relevant_ranks(rankings, relevant, depth).loc[test.query_id].to_numpy()
            for kind, relevant in relevance.items()
        }
        metrics = {
            **metrics_by_relevance(ranks[system], n_boot, seed),
            "corpus_size": int(len(semantic_ids)),
            **info,
        }
        result["systems"][system] = {
            "metrics": metrics,
            **{f"ranks_{k}": v.tolist() for k, v in ranks[system].items()},
        }
        log_metrics(metrics, prefix=f"{modality}.{system}.")
        log_metrics(metrics["same_description"], prefix=f"{modality}.{system}.same_description.")
        logger.info(
            "%s %s: %s",
            modality,
            system,
            {k: round(metrics[k], 3) for k in ("R@1", "R@5", "R@10", "MRR@10")},
        )
    result["query_ids"] = test.query_id.tolist()
    # which saved models these numbers measure: `cart-search` serves exactly these
    result["models"] = {
        name: systems[f"{system}_timing"].get("model_version")
        for name, system in MODEL_OF_SYSTEM.items()
    }
    result["comparisons"] = comparisons({s: r["strict"] for s, r in ranks.items()}, n_boot, seed)
    return result


def comparisons(ranks: dict[str, np.ndarray], n_boot: int, seed: int) -> dict:
    """CART (and its hybrids) against each baseline there is, paired over the same queries."""
    return {
        f"{system}_vs_{baseline}": paired_comparison(ranks[system], ranks[baseline], n_boot, seed)
        for system in ("cart", *HYBRIDS)
        for baseline in BASELINES
        if baseline in ranks
    }


def run_config(
    dataset_root: str,
    id_variant: str,
    decoder: dict[str, Any],
    captioning: dict[str, Any],
    evaluation: dict[str, Any],
    ingest: dict[str, Any],
    seed: int,
    run_label: str,
) -> dict:
    """What distinguishes this run from an ablation or a lever of it (metrics.json, MLflow tags)."""
    return {
        "run_label": run_label,
        "collection": Path(dataset_root).name,
        "id_variant": id_variant,
        "fusion": bool(decoder["fusion"]),
        "consistency_weight": float(decoder["consistency_weight"]),
        "soft_targets": f"{decoder['soft_targets']['source']}:{float(decoder['soft_target_weight'])}",
        "pseudo_per_described_item": captioning["pseudo_per_described_item"],
        "seed": int(seed),
        "split_seed": int(ingest["split_seed"]),
        "validation_fold": int(ingest.get("validation_fold", 0)),
        "beam_size": int(evaluation["beam_size"]),
        "top_k": int(evaluation["top_k"]),
        "int8": bool(evaluation["int8"]),
    }


def summarise(
    dataset_root: str,
    id_variant: str,
    decoder: dict,
    captioning: dict,
    evaluation: dict,
    ingest: dict,
    seed: int,
    run_label: str,
    *evaluations: dict,
) -> tuple[dict, Figure]:
    """metrics.json (per modality and pooled over modalities) and the recall bar chart."""
    import mlflow

    config = run_config(
        dataset_root, id_variant, decoder, captioning, evaluation, ingest, seed, run_label
    )
    n_boot = int(evaluation["bootstrap_samples"])
    present = [s for s in SYSTEMS if any(s in e["systems"] for e in evaluations)]
    metrics: dict[str, Any] = {
        "systems": present,
        "by_modality": {},
        "overall": {},
        "comparisons": {},
        "config": config,
    }
    metrics["models"] = {e["modality"]: e["models"] for e in evaluations}
    for e in evaluations:
        metrics["by_modality"][e["modality"]] = {
            s: e["systems"][s]["metrics"] for s in SYSTEMS if s in e["systems"]
        }
        metrics["comparisons"][e["modality"]] = e["comparisons"]
    pooled = {}
    # overall: the systems every modality has (a zero-shot search of one modality alone
    # pooled with nothing would not be comparable with CART's over all of them)
    for system in [s for s in present if all(s in e["systems"] for e in evaluations)]:
        pooled[system] = {
            kind: np.concatenate(
                [
                    np.asarray(e["systems"][system][f"ranks_{kind}"], dtype=np.int64)
                    for e in evaluations
                ]
            )
            if evaluations
            else np.zeros(0, np.int64)
            for kind in ("strict", "same_description")
        }
        metrics["overall"][system] = metrics_by_relevance(pooled[system], n_boot, seed)
        log_metrics(metrics["overall"][system], prefix=f"overall.{system}.")
    metrics["comparisons"]["overall"] = comparisons(
        {s: r["strict"] for s, r in pooled.items()}, n_boot, seed
    )
    if mlflow.active_run() is not None:
        mlflow.set_tags({k: str(v) for k, v in config.items()})
    panels = {**metrics["by_modality"], "overall": metrics["overall"]}
    return metrics, recall_chart(
        panels, title=f"Test-query recall, identifiers: {config['id_variant']}"
    )
