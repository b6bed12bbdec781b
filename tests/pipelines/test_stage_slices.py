"""Each stage pipeline, namespaced per modality, run with SequentialRunner on a small slice.

The parameters are the project's own conf/base values (a few made smaller), the data a slice
of the shipped dataset. A session fixture runs every stage once in order; each test then runs
its own stage again on a fresh catalog holding copies of the upstream outputs, so any test
passes alone (`pytest tests/pipelines/test_stage_slices.py::test_x`).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pillow import ImageDataset

from cart_pipeline.core.manifest import build_tables
from cart_pipeline.core.tables import column_to_matrix, int_lists_to_matrix
from cart_pipeline.pipeline_registry import register_pipelines
from cart_pipeline.pipelines import (
    captioning,
    coarse_clustering,
    decoder_training,
    dual_tower,
    evaluation,
    feature_extraction,
    id_assignment,
    rqvae_quantization,
    serving,
)
from cart_pipeline.search import Retriever
from tests.conftest import DEFAULT_DATASET, PROJECT_ROOT

MODALITIES = ("image", "audio")
STAGES = (
    feature_extraction,
    captioning,
    dual_tower,
    coarse_clustering,
    rqvae_quantization,
    id_assignment,
    decoder_training,
    evaluation,
    serving,
)
# Figures go through real files: the report reads back as an image what a node saved as a figure.
PLOTS = ["recall_plot", *(f"{m}.id_prefix_plot" for m in MODALITIES)]


def _flatten(prefix: str, value, out: dict) -> None:
    out[prefix] = value
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, out)


def _parameters() -> dict:
    params = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")[
        "parameters"
    ]
    params["dataset_root"] = str(DEFAULT_DATASET)
    # enough optimisation steps for a 30-item corpus (one batch per epoch), little else
    params["rqvae_quantization"].update(epochs=150, batch_size=16)
    params["decoder_training"].update(epochs=2, d_model=32, n_layers=1, n_heads=2, by_modality={})
    params["dual_tower"].update(epochs=3)
    # the opt-in per-query validation ranks (the lever runner's), so the slice covers them
    params["evaluation"].update(bootstrap_samples=50, report_examples=2, validation_ranks=True)
    flat: dict = {}
    for key, value in params.items():
        _flatten(key, value, flat)
    return flat


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner does not release, so the test can read every output."""

    def _release(self) -> None:
        pass


def run(pipeline, catalog: DataCatalog) -> DataCatalog:
    for name in pipeline.all_outputs():
        if name not in catalog:
            catalog[name] = KeptDataset()
    SequentialRunner().run(pipeline, catalog)
    return catalog


@pytest.fixture(scope="session")
def upstream(default_manifest, tmp_path_factory) -> dict:
    """Every stage once, in order, on an ingested slice (30 images, 14 sounds): name -> data."""
    images = default_manifest[default_manifest.modality == "image"].iloc[::30]
    audio = default_manifest[default_manifest.modality == "audio"].iloc[::9]
    candidates, queries = build_tables(
        pd.concat([images, audio]),
        seed=3,
        test_fraction=0.2,
        validation_fraction=0.15,
        min_validation_queries=3,
    )
    datasets = {f"params:{k}": MemoryDataset(v) for k, v in _parameters().items()}
    datasets.update(candidates=MemoryDataset(candidates), queries=MemoryDataset(queries))
    plots = tmp_path_factory.mktemp("plots")
    for name in PLOTS:
        datasets[f"{name}@figure"] = MatplotlibDataset(filepath=str(plots / f"{name}.png"))
        datasets[f"{name}@png"] = ImageDataset(filepath=str(plots / f"{name}.png"))
    catalog = DataCatalog(datasets)
    for stage in STAGES:
        run(stage.create_pipeline(MODALITIES), catalog)
    return {name: catalog[name] for name in catalog.keys()}


def stage_catalog(upstream: dict, *stages) -> DataCatalog:
    """A fresh catalog for `stages`: copies of everything upstream, none of their outputs."""
    produced = set().union(*(stage.create_pipeline(MODALITIES).all_outputs() for stage in stages))
    kept = {}
    for name, dataset in upstream.items():
        if name in produced and not name.endswith("@png"):
            continue
        kept[name] = (
            dataset
            if isinstance(dataset, (MatplotlibDataset, ImageDataset))
            else MemoryDataset(copy.deepcopy(dataset.load()))
        )
    return DataCatalog(kept)


def test_registry_has_every_stage_and_default_runs_them_all():
    pipelines = register_pipelines()
    stages = {"ingest", *(s.__name__.rsplit(".", 1)[-1] for s in STAGES)}
    assert stages <= set(pipelines)
    assert set(pipelines["__default__"].nodes) == set().union(*(pipelines[s].nodes for s in stages))


def test_feature_extraction_slice(upstream):
    catalog = run(
        feature_extraction.create_pipeline(MODALITIES), stage_catalog(upstream, feature_extraction)
    )
    for modality, dim in (("image", 1280), ("audio", 512)):
        features = catalog[f"{modality}.candidate_features"].load()
        matrix = column_to_matrix(features.embedding)
        candidates = catalog[f"{modality}.candidates"].load()
        rejected = catalog[f"{modality}.feature_rejects"].load()
        assert len(features) + len(rejected) == len(candidates)
        assert matrix.shape[1] == dim and np.isfinite(matrix).all()
        assert np.allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-4)
        queries = catalog[f"{modality}.query_features"].load()
        assert column_to_matrix(queries.embedding).shape == (
            len(catalog[f"{modality}.queries"].load()),
            384,
        )
    assert "class_top" in catalog["image.candidate_features"].load()


def test_captioning_slice_covers_every_item_without_heldout_queries(upstream):
    catalog = run(captioning.create_pipeline(MODALITIES), stage_catalog(upstream, captioning))
    for modality in MODALITIES:
        pseudo = catalog[f"{modality}.pseudo_queries"].load()
        indexed = catalog[f"{modality}.candidate_features"].load().item_id
        assert set(pseudo.item_id) == set(indexed)
        queries = catalog[f"{modality}.queries"].load()
        held_out = queries[queries.split.isin(["validation", "test"])]
        assert not held_out.empty
        assert pseudo.merge(held_out, on=["item_id", "text"]).empty
        features = catalog[f"{modality}.pseudo_query_features"].load()
        assert list(features.query_id) == list(pseudo.query_id)
        pairs = catalog[f"{modality}.training_pairs"].load()
        assert set(pairs.query_id[pairs.is_validation]) == set(
            queries.query_id[queries.split == "validation"]
        )
        assert not pairs.query_id.isin(queries.query_id[queries.split == "test"]).any()
    assert {"pseudo:imagenet_labels", "pseudo:knn_transfer"} <= set(
        catalog["image.pseudo_queries"].load().source
    )


def test_dual_tower_slice_keeps_its_best_validation_epoch(upstream):
    catalog = run(dual_tower.create_pipeline(MODALITIES), stage_catalog(upstream, dual_tower))
    for modality in MODALITIES:
        checkpoint = catalog[f"{modality}.dual_tower"].load()
        assert (
            checkpoint["extra"]["item_ids"]
            == catalog[f"{modality}.candidate_features"].load().item_id.tolist()
        )
        assert all("val_mrr10" in h for h in checkpoint["extra"]["history"])


def test_identifier_stages_slice(upstream):
    stages = (coarse_clustering, rqvae_quantization, id_assignment)
    catalog = stage_catalog(upstream, *stages)
    for stage in stages:
        run(stage.create_pipeline(MODALITIES), catalog)
    for modality in MODALITIES:
        ids = catalog[f"{modality}.semantic_ids"].load()
        tokens = int_lists_to_matrix(ids.tokens)
        assert len(np.unique(tokens, axis=0)) == len(ids), "identifiers are unique"
        vocabulary = catalog[f"{modality}.id_statistics"].load()["vocabulary"]
        starts = np.asarray(vocabulary["offsets"])
        ends = starts + np.asarray(vocabulary["position_sizes"])
        assert ((tokens >= starts) & (tokens < ends)).all(), "each position stays in its range"
        assert ids.id_str.str.match(r"^c\d+(-f\d+)+-u\d+$").all()
        # the RQ-VAE explains a clear share of the residual (feature - centroid) of real features
        diagnostics = catalog[f"{modality}.quantiser_diagnostics"].load()
        assert diagnostics["recon_mse"] < 0.9 * diagnostics["zero_mse"]
        assert all(diagnostics[f"usage_l{level}"] > 0.25 for level in (1, 2, 3))


def test_decoder_training_slice_writes_a_checkpoint_selected_on_validation(upstream):
    catalog = run(
        decoder_training.create_pipeline(MODALITIES), stage_catalog(upstream, decoder_training)
    )
    for modality in MODALITIES:
        checkpoint = catalog[f"{modality}.cart_decoder"].load()
        history = catalog[f"{modality}.decoder_history"].load()
        assert len(history) == 2 and history.val_mrr10.notna().all()
        assert checkpoint["extra"]["selected_epoch"] == int(
            history.epoch[history.val_mrr10.idxmax()]
        )
        assert (
            checkpoint["extra"]["item_ids"]
            == catalog[f"{modality}.semantic_ids"].load().item_id.tolist()
        )


def test_evaluation_slice_reports_every_system_with_intervals(upstream):
    catalog = run(evaluation.create_pipeline(MODALITIES), stage_catalog(upstream, evaluation))
    metrics = catalog["metrics"].load()
    assert set(metrics["systems"]) == {
        "cart", "cart_rerank", "cart_lookup_rerank", "dual_tower", "pair_lookup"
    }  # fmt: skip
    for group in (*MODALITIES, "overall"):
        systems = metrics["overall"] if group == "overall" else metrics["by_modality"][group]
        for values in systems.values():
            for name in ("R@1", "R@10", "MRR@10"):
                lo, hi = values[f"{name}_ci95"]
                assert 0 <= lo <= values[name] <= hi <= 1
            assert values["same_description"]["R@10"] >= values["R@10"]
        assert "cart_vs_pair_lookup" in metrics["comparisons"][group]
    json.dumps(metrics)  # JSON-ready as saved
    assert metrics["config"]["validation_fold"] == 0
    # CART's per-query validation ranks, which the lever runner pools over runs
    for modality in MODALITIES:
        validation = metrics["by_modality"][modality]["cart"]["validation"]
        queries = catalog[f"{modality}.queries"].load()
        assert sorted(validation["query_ids"]) == sorted(
            queries.query_id[queries.split == "validation"]
        )
        top_k = metrics["config"]["top_k"]
        assert all(1 <= r <= top_k + 1 for r in validation["ranks"])
        assert len(validation["ranks"]) == len(validation["query_ids"])
    assert "<table" in catalog["report"].load()


def test_serving_slice_packages_the_evaluated_index_with_its_numbers(upstream):
    catalog = run(serving.create_pipeline(MODALITIES), stage_catalog(upstream, serving))
    modality = MODALITIES[0]
    search_index = catalog[f"{modality}.search_index"].load()
    measured = catalog[f"{modality}.evaluation_metrics"].load()["systems"]["cart"]["metrics"]
    assert search_index["metrics"]["R@10"] == measured["R@10"]
    [rows] = Retriever.from_search_indexes([search_index]).search(["a dog"], k=3)
    assert [r.rank for r in rows] == [1, 2, 3] and all(r.media_path for r in rows)
