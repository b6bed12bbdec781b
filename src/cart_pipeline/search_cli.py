"""`cart-search`: text queries in, ranked items out, or the search page (`--serve`).

    cart-search "a brown hen" --top-k 5
    cart-search --queries my_queries.txt --json
    cart-search --env emoji "grinning face"       # another collection's indexes
    cart-search --serve                            # http://127.0.0.1:8765

The searching itself is :class:`cart_pipeline.search.Retriever`; this module is the command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from cart_pipeline.search import Retriever, SearchError


def _at_least_one(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cart-search", description="Search a trained CART index with text queries."
    )
    parser.add_argument("query", nargs="?", help="the text query (or use --queries FILE)")
    parser.add_argument("--queries", type=Path, help="a file with one query per line")
    parser.add_argument(
        "--top-k",
        type=_at_least_one,
        default=10,
        help="results per query and modality, >= 1 (default 10; at most the corpus size)",
    )
    parser.add_argument(
        "--beam-size",
        type=_at_least_one,
        default=None,
        help="beam size (default: max(top-k, 10), at most the corpus size)",
    )
    parser.add_argument("--modality", help="search only this modality's index (e.g. image, audio)")
    parser.add_argument(
        "--system",
        default="cart",
        help="cart (default), cart_rerank, cart_lookup_rerank, dual_tower, pair_lookup or "
        "zero_shot (with a text-aligned encoder): any system the evaluation measured",
    )
    parser.add_argument("--version", help="a Kedro save version of the artifacts (default: latest)")
    parser.add_argument("--run-id", help="an MLflow run id whose artifacts to use")
    parser.add_argument(
        "--env", help="the Kedro environment (collection) whose indexes to search (default local)"
    )
    parser.add_argument(
        "--device", help="cpu, cuda, cuda:N, mps or auto (default: the project's `device`)"
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="int8-quantised decoder, bf16 fine branch where native (CPU; faster, scores shift slightly)",
    )
    parser.add_argument(
        "--project", type=Path, default=None, help="the Kedro project (default: the current folder)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON lines (one object per result)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="print load time and per-query latency"
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="start the search page (every evaluated system side by side) instead",
    )
    parser.add_argument("--host", default="127.0.0.1", help="--serve: address (default local)")
    parser.add_argument("--port", type=int, default=8765, help="--serve: port (default 8765)")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        help="--serve: a Host name to answer besides loopback ones (repeatable)",
    )
    return parser


def _quiet() -> None:
    """stderr carries only what the user must know: no library deprecation warnings, no
    weight-loading progress bars, no Kedro INFO logs (--verbose brings them back)."""
    import warnings
    from importlib.resources import files

    # not `filterwarnings("ignore")`: importing mlflow inserts its own "once" filter in front
    warnings.showwarning = lambda *args, **kwargs: None
    os.environ.setdefault(
        "KEDRO_LOGGING_CONFIG", str(files("cart_pipeline") / "resources" / "quiet_logging.yml")
    )
    # read when transformers is imported (only to script the text encoder, the first time):
    # importing it here to silence it would cost every search a second
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if not args.verbose:
        _quiet()
    logging.basicConfig(level=logging.WARNING)

    def load(baselines: bool = False) -> Retriever:
        retriever = Retriever.load(
            args.project,
            version=args.version,
            run_id=args.run_id,
            modalities=[args.modality] if args.modality else None,
            device=args.device,
            baselines=baselines,
            env=args.env,
        )
        if args.int8:
            retriever.indexes = {m: index.int8() for m, index in retriever.indexes.items()}
        return retriever

    try:
        if args.serve:
            from cart_pipeline.web import serve

            serve(load(baselines=True), args.host, args.port, tuple(args.allowed_host))
            return 0
        if args.queries:
            if not args.queries.is_file():
                raise SearchError(f"queries file not found: {args.queries}")
            from cart_pipeline.core.errors import InputError
            from cart_pipeline.core.textfile import decode_utf8

            try:
                text = decode_utf8(args.queries.read_bytes(), str(args.queries))
            except InputError as error:
                raise SearchError(str(error)) from None
            queries = [line.strip() for line in text.splitlines() if line.strip()]
            if not queries:
                raise SearchError(f"no queries in {args.queries}")
        elif args.query is not None:
            queries = [args.query]
        else:
            raise SearchError('give a query, e.g. cart-search "a brown hen", or --queries FILE')
        if not all(q.strip() for q in queries):
            raise SearchError("empty query")
        retriever = load(baselines=args.system != "cart")
        started = time.perf_counter()
        results = retriever.search(
            queries,
            k=args.top_k,
            modality=args.modality,
            beam_size=args.beam_size,
            system=args.system,
        )
        seconds = time.perf_counter() - started
    except SearchError as error:
        print(f"cart-search: error: {error}", file=sys.stderr)  # noqa: T201
        return 2
    for query, rows in zip(queries, results, strict=True):
        if args.json:
            for row in rows:
                print(json.dumps(asdict(row), ensure_ascii=False))  # noqa: T201
            continue
        print(f"\nquery: {query}")  # noqa: T201
        for row in rows:
            print(
                f"  {row.rank:>3}  {row.modality:<6} {row.score:9.3f}  {row.item_id:<45} {row.description}  [{row.media_path}]"
            )  # noqa: T201
    if args.verbose:
        added = retriever.items_added
        served = ", ".join(
            f"{m} {v}" + (f" (+{added[m]} items added)" if added.get(m) else "")
            for m, v in retriever.versions.items()
        )
        print(f"decoder versions: {served}", file=sys.stderr)  # noqa: T201
        print(
            f"loaded in {retriever.load_seconds:.2f} s; {len(queries)} queries in {seconds:.3f} s ({1000 * seconds / len(queries):.1f} ms/query)",
            file=sys.stderr,
        )  # noqa: T201
    return 0


def cli() -> None:
    """The `cart-search` command: ``main``, then exit without Python's interpreter teardown,
    which with torch loaded costs a one-shot search another ~0.6 s and does nothing it needs
    (every file it wrote is closed; the streams are flushed here)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    cli()
