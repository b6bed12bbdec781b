from kedro.pipeline import Pipeline, node

from .nodes import build_candidates_and_queries, validate


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                validate,
                inputs=["manifest", "params:ingest", "params:dataset_root"],
                outputs=["valid_manifest", "rejected_items"],
                name="validate_manifest",
            ),
            node(
                build_candidates_and_queries,
                inputs=["valid_manifest", "rejected_items", "params:ingest", "params:modalities"],
                outputs=["candidates", "queries"],
                name="build_candidates_and_queries",
            ),
        ]
    )
