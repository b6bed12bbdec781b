"""Does a trained index know its own training pairs? Each system searched with its training texts.

Before asking how CART generalises to held-out queries, ask whether it learned what it was
trained on. Every training text that belongs to exactly one item (case and punctuation
ignored, as the leakage guards compare texts) is searched as a query, its own item the
relevant one: CART, the dual tower and the pair lookup, through the evaluation stage's own
ranking functions (ties against the relevant item), grouped by the split of the item (train items: their human descriptions;
test and validation items: their pseudo-queries) and the text's source. Validation texts are
not training texts and are left out. Reads the project's newest artifacts of one modality,
i.e. those of its last `kedro run`.

    python -m benchmarks.pair_fit [--modality image] [--project .]

Writes benchmarks/results/pair_fit.{csv,md}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from cart_pipeline.core.metrics import relevant_ranks
from cart_pipeline.core.pairs import normalise_text
from cart_pipeline.pipelines.evaluation.nodes import (
    rank_with_cart,
    rank_with_dual_tower,
    rank_with_pair_lookup,
)
from experiments.runs import markdown_table

RESULTS = Path(__file__).parent / "results"


def single_item_texts(pairs: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """Training texts of exactly one item, one row each, as evaluation `queries` (split test)."""
    training = pairs[~pairs.is_validation]
    key = normalise_text(training.text)
    owners = training.groupby(key).item_id.transform("nunique")
    single = training[owners == 1].loc[lambda t: ~key[t.index].duplicated()]
    item_split = queries.drop_duplicates("item_id").set_index("item_id").split
    return single.assign(
        item_split=single.item_id.map(item_split).fillna("no human query"), split="test"
    ).reset_index(drop=True)


def fit_table(catalog, params: dict, modality: str) -> pd.DataFrame:
    load = lambda name: catalog.load(f"{modality}.{name}")  # noqa: E731
    pairs, candidates = load("training_pairs"), load("candidate_features")
    texts = single_item_texts(pairs, load("queries"))
    # every training text's pooled embedding, human and pseudo, in one lookup table
    features = pd.concat([load("query_features"), load("pseudo_query_features")])
    evaluation, encoder = params["evaluation"], params["feature_extraction"]["text_encoder"]
    no_more_features = features.iloc[:0]  # the pseudo-queries' are in `features` already
    rankings = {
        "cart": rank_with_cart(load("cart_decoder"), texts, evaluation, encoder, "cpu")[0],
        "dual_tower": rank_with_dual_tower(
            load("dual_tower"), texts, features, candidates, evaluation, encoder
        )[0],
        "pair_lookup": rank_with_pair_lookup(
            pairs, texts, features, no_more_features, candidates, evaluation
        )[0],
    }
    rows = []
    for system, ranking in rankings.items():
        ranks = relevant_ranks(ranking, texts[["query_id", "item_id"]]).reindex(texts.query_id)
        ranked = texts.assign(rank=ranks.to_numpy())
        for (item_split, source), group in [
            *ranked.groupby(["item_split", "source"]),
            (("all", "all"), ranked),
        ]:
            rows.append(
                {
                    "system": system,
                    "item split": item_split,
                    "source": source,
                    "texts": len(group),
                    "R@1": float((group["rank"] <= 1).mean()),
                    "R@10": float((group["rank"] <= 10).mean()),
                }
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modality", default="image")
    ap.add_argument("--project", type=Path, default=Path.cwd())
    args = ap.parse_args(argv)
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = args.project.resolve()
    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        context = session.load_context()
        table = fit_table(context.catalog, context.params, args.modality)
        run = context.catalog.load("metrics")["config"]
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "pair_fit.csv", index=False)
    header = (
        f"Training texts of one item searched as queries ({args.modality}; the project's newest "
        f"run: seed {run.get('seed')}, run_label {run.get('run_label')}).\n\n"
    )
    (RESULTS / "pair_fit.md").write_text(header + markdown_table(table) + "\n")
    print(header + markdown_table(table))


if __name__ == "__main__":
    main()
