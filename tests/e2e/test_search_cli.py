"""`cart-search` through the real console script, on the index trained by `kedro run`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import run

pytestmark = pytest.mark.slow  # the `cart-search` command on a trained project

CART_SEARCH = str(Path(sys.executable).parent / "cart-search")


@pytest.fixture(scope="module")
def project(trained_project):
    project, result = trained_project
    assert result.returncode == 0, result.stderr[-3000:]
    return project


def test_text_output_lists_ranked_results_with_descriptions(project):
    result = run(
        [
            CART_SEARCH,
            "a brown hen",
            "--top-k",
            "3",
            "--modality",
            "image",
            "--project",
            str(project),
            "--verbose",
        ],
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    lines = [
        line for line in result.stdout.splitlines() if line.strip().startswith(("1 ", "2 ", "3 "))
    ]
    assert len(lines) == 3
    assert all(" image " in line and "[images/" in line for line in lines)
    assert "loaded in" in result.stderr and "ms/query" in result.stderr


def test_stderr_is_clean_without_verbose(project):
    result = run(
        [CART_SEARCH, "a brown hen", "--top-k", "2", "--project", str(project)], cwd=project
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no deprecation warnings, progress bars or Kedro INFO logs
    assert "query: a brown hen" in result.stdout


def test_json_output_is_one_record_per_result_in_score_order(project):
    result = run(
        [CART_SEARCH, "a dog", "--top-k", "4", "--json", "--project", str(project)], cwd=project
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    by_modality = {}
    for record in records:
        by_modality.setdefault(record["modality"], []).append(record)
    assert set(by_modality) == {"image", "audio", "video"}
    for rows in by_modality.values():
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
        assert all(a["score"] >= b["score"] for a, b in zip(rows, rows[1:], strict=False))
        assert {"item_id", "description", "media_path", "score"} <= set(rows[0])


def test_batch_file(project, tmp_path):
    queries = tmp_path / "queries.txt"
    queries.write_text("a red apple\n\na truck\n")
    result = run(
        [
            CART_SEARCH,
            "--queries",
            str(queries),
            "--top-k",
            "2",
            "--json",
            "--modality",
            "audio",
            "--project",
            str(project),
        ],
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    asked = [json.loads(line)["query"] for line in result.stdout.splitlines()]
    assert asked.count("a red apple") == 2 and asked.count("a truck") == 2


def test_empty_query_is_an_error(project):
    result = run([CART_SEARCH, "   ", "--project", str(project)], cwd=project)
    assert result.returncode == 2 and "empty query" in result.stderr


@pytest.mark.parametrize("flag, value", [("--top-k", "0"), ("--top-k", "-1"), ("--beam-size", "0")])
def test_top_k_and_beam_below_one_are_errors(project, flag, value):
    result = run([CART_SEARCH, "a hen", flag, value, "--project", str(project)], cwd=project)
    assert (
        result.returncode == 2
        and "must be a whole number >= 1" in result.stderr
        and not result.stdout
    )


def test_top_k_past_the_corpus_returns_the_whole_corpus_once(project):
    from cart_pipeline.search import Retriever

    corpus = len(Retriever.load(project, modalities=["audio"]).indexes["audio"].item_ids)
    result = run(
        [
            CART_SEARCH,
            "a bell",
            "--top-k",
            "100000",
            "--modality",
            "audio",
            "--json",
            "--project",
            str(project),
        ],
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    items = [json.loads(line)["item_id"] for line in result.stdout.splitlines()]
    assert len(items) == len(set(items)) == corpus


def test_unknown_version_is_an_error(project):
    result = run(
        [CART_SEARCH, "a hen", "--version", "1999-01-01T00.00.00.000Z", "--project", str(project)],
        cwd=project,
    )
    assert result.returncode == 2 and "1999-01-01T00.00.00.000Z" in result.stderr


def test_no_trained_index_says_how_to_build_it(project, tmp_path):
    fresh = tmp_path / "fresh"
    shutil.copytree(project / "conf", fresh / "conf")
    shutil.copy(project / "pyproject.toml", fresh / "pyproject.toml")
    shutil.copytree(project / "src", fresh / "src")
    result = run([CART_SEARCH, "a hen", "--project", str(fresh)], cwd=fresh)
    assert result.returncode == 2
    assert "no trained CART index" in result.stderr and "kedro run" in result.stderr


def test_python_api_returns_plain_records(project):
    from cart_pipeline.search import Retriever

    retriever = Retriever.load(project, modalities=["image"])
    [results] = retriever.search(["a garbage truck"], k=5)
    assert len(results) == 5 and results[0].rank == 1 and results[0].modality == "image"


def test_indexes_loaded_together_encode_a_query_once_and_rank_as_alone(project):
    from cart_pipeline.search import Retriever

    retriever = Retriever.load(project)  # every modality: one shared text encoder
    encoder = next(iter(retriever.indexes.values())).text_encoder
    calls = []
    encode_layers = encoder.encode_layers
    encoder.encode_layers = lambda texts: calls.append(texts) or encode_layers(texts)
    [results] = retriever.search(["a brown hen"], k=3)

    assert calls == [["a brown hen"]]
    assert {r.modality for r in results} == {"image", "audio", "video"}
    alone = Retriever.load(project, modalities=["video"]).search(["a brown hen"], k=3)[0]
    assert [(r.item_id, r.score) for r in results if r.modality == "video"] == [
        (r.item_id, r.score) for r in alone
    ]


def test_run_id_selects_that_runs_artifacts(project):
    import sqlite3

    with sqlite3.connect(project / "mlflow.db") as db:
        (run_id,) = db.execute("select run_uuid from runs order by start_time limit 1").fetchone()
    result = run(
        [
            CART_SEARCH,
            "a hen",
            "--run-id",
            run_id,
            "--top-k",
            "1",
            "--json",
            "--project",
            str(project),
        ],
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    unknown = run(
        [CART_SEARCH, "a hen", "--run-id", "0" * 32, "--project", str(project)], cwd=project
    )
    assert unknown.returncode == 2 and "unknown MLflow run id" in unknown.stderr


def test_the_catalog_writes_search_indexes_where_the_cli_reads_them():
    from kedro.config import OmegaConfigLoader

    from cart_pipeline.search import SEARCH_INDEX
    from cart_pipeline.settings import CONFIG_LOADER_ARGS
    from tests.conftest import PROJECT_ROOT

    catalog = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS)["catalog"]
    assert catalog["{modality}.search_index"]["filepath"] == SEARCH_INDEX.format(
        data_dir="data", modality="{modality}"
    )
    assert catalog["{modality}.search_index"]["versioned"]


def test_a_search_reads_the_saved_index_without_kedro_or_pandas(project):
    # what keeps a cold start short: the saved search index alone, no Kedro, no pandas
    script = (
        "import sys; from cart_pipeline.search import Retriever; "
        f"r = Retriever.load({str(project)!r}); [rows] = r.search(['a brown hen'], k=3); "
        "print(len(rows), sorted(r.indexes), [m for m in ('kedro', 'pandas') if m in sys.modules])"
    )
    result = run([sys.executable, "-c", script], cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "9 ['audio', 'image', 'video'] []"


def test_the_saved_index_and_the_catalog_serve_the_same_ranking(project):
    from cart_pipeline.search import Retriever

    saved = Retriever.load(project)
    assembled = Retriever.load(project, baselines=True)  # the catalog path (the search page's)
    assert saved.versions == assembled.versions and saved.items == assembled.items
    queries = ["a brown hen", "a dog barking", "a red apple"]
    for a, b in zip(saved.search(queries, k=5), assembled.search(queries, k=5), strict=True):
        assert [(r.item_id, round(r.score, 4)) for r in a] == [
            (r.item_id, round(r.score, 4)) for r in b
        ]


def test_a_version_without_a_search_index_is_assembled_from_the_catalog(project):
    from cart_pipeline.search import SEARCH_INDEX, Retriever

    saved = Retriever.load(project, modalities=["image"])
    version = saved.versions["image"]
    folder = project / SEARCH_INDEX.format(data_dir="data", modality="image") / version
    moved = folder.with_name("moved-away")
    folder.rename(moved)  # as for a decoder evaluated by a later, evaluation-only run
    try:
        assembled = Retriever.load(project, version=version, modalities=["image"])
    finally:
        moved.rename(folder)
    assert assembled.versions == {"image": version}
    [a], [b] = saved.search(["a brown hen"], k=3), assembled.search(["a brown hen"], k=3)
    assert [r.item_id for r in a] == [r.item_id for r in b]


def test_every_evaluated_system_answers_from_the_saved_index(project):
    metrics = json.loads(
        sorted((project / "data/08_reporting/metrics.json").glob("*/metrics.json"))[-1].read_text()
    )
    for system in metrics["by_modality"]["image"]:
        result = run(
            [CART_SEARCH, "a brown hen", "--modality", "image", "--system", system, "--top-k",
             "3", "--json", "--project", str(project)],
            cwd=project,
        )  # fmt: skip
        assert result.returncode == 0, (system, result.stderr[-2000:])
        assert len(result.stdout.splitlines()) == 3, system
    missing = run(
        [CART_SEARCH, "a hen", "--system", "zero_shot", "--project", str(project)], cwd=project
    )
    assert missing.returncode == 2 and "no zero_shot index for" in missing.stderr
    assert "pair_lookup" in missing.stderr  # it says which systems there are
