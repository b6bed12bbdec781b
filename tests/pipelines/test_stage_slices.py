"""Each stage pipeline, namespaced per modality, run with SequentialRunner on a small slice.

The parameters are the project's own conf/base values (a few made smaller), the data a slice
of the shipped dataset; outputs of one stage feed the next, as in `kedro run`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from cart_pipeline.core.manifest import build_tables
from cart_pipeline.core.tables import column_to_matrix, int_lists_to_matrix
from cart_pipeline.pipeline_registry import register_pipelines
from cart_pipeline.pipelines import (
    captioning,
    coarse_clustering,
    feature_extraction,
    id_assignment,
    rqvae_quantization,
)
from tests.conftest import DEFAULT_DATASET, PROJECT_ROOT

MODALITIES = ("image", "audio")


def _flatten(prefix: str, value, out: dict) -> None:
    out[prefix] = value
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, out)


@pytest.fixture(scope="module")
def catalog(default_manifest) -> DataCatalog:
    """Ingested slice (30 images, 14 audio) + every parameter as `params:` datasets."""
    images = default_manifest[default_manifest.modality == "image"].iloc[::30]
    audio = default_manifest[(default_manifest.modality == "audio")].iloc[::9]
    candidates, queries = build_tables(pd.concat([images, audio]), seed=3, test_fraction=0.2)
    params = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="local")["parameters"]
    params["dataset_root"] = str(DEFAULT_DATASET)
    # enough optimisation steps for a 30-item corpus (one batch per epoch)
    params["rqvae_quantization"].update(epochs=150, batch_size=16)
    flat: dict = {}
    for key, value in params.items():
        _flatten(key, value, flat)
    datasets = {f"params:{k}": MemoryDataset(v) for k, v in flat.items()}
    datasets.update(candidates=MemoryDataset(candidates), queries=MemoryDataset(queries))
    return DataCatalog(datasets)


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner does not release, so the test can read every output."""

    def _release(self) -> None:
        pass


def run(pipeline, catalog: DataCatalog) -> None:
    for name in pipeline.all_outputs():
        if name not in catalog:
            catalog[name] = KeptDataset()
    SequentialRunner().run(pipeline, catalog)


def test_registry_has_every_stage_and_default_runs_them_all():
    pipelines = register_pipelines()
    stages = {"ingest", "feature_extraction", "coarse_clustering", "rqvae_quantization", "id_assignment", "captioning", "dual_tower", "decoder_training", "evaluation"}
    assert stages <= set(pipelines)
    assert set(pipelines["__default__"].nodes) == set().union(*(pipelines[s].nodes for s in stages))


def test_feature_extraction_slice(catalog):
    run(feature_extraction.create_pipeline(MODALITIES), catalog)
    for modality, dim in (("image", 1280), ("audio", 512)):
        features = catalog[f"{modality}.candidate_features"].load()
        matrix = column_to_matrix(features.embedding)
        candidates = catalog[f"{modality}.candidates"].load()
        rejected = catalog[f"{modality}.feature_rejects"].load()
        assert len(features) + len(rejected) == len(candidates)
        assert matrix.shape[1] == dim and np.isfinite(matrix).all()
        assert np.allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-4)
        queries = catalog[f"{modality}.query_features"].load()
        assert column_to_matrix(queries.embedding).shape == (len(catalog[f"{modality}.queries"].load()), 384)
    assert "class_top" in catalog["image.candidate_features"].load()


def test_identifier_stages_slice(catalog):
    for stage in (coarse_clustering, rqvae_quantization, id_assignment):
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


def test_captioning_slice_covers_every_item_without_test_queries(catalog):
    run(captioning.create_pipeline(MODALITIES), catalog)
    for modality in MODALITIES:
        pseudo = catalog[f"{modality}.pseudo_queries"].load()
        indexed = catalog[f"{modality}.candidate_features"].load().item_id
        assert set(pseudo.item_id) == set(indexed)
        queries = catalog[f"{modality}.queries"].load()
        test = queries[queries.split == "test"]
        leaked = pseudo.merge(test, on=["item_id", "text"])
        assert leaked.empty
        features = catalog[f"{modality}.pseudo_query_features"].load()
        assert list(features.query_id) == list(pseudo.query_id)
    assert {"pseudo:imagenet_labels", "pseudo:knn_transfer"} <= set(catalog["image.pseudo_queries"].load().source)
