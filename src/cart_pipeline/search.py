"""Search a trained CART index: `cart-search "a brown hen" --top-k 5` or the Python API.

    from cart_pipeline.search import Retriever
    retriever = Retriever.load()                  # latest artifacts of this project
    retriever.search(["a brown hen"], k=5)        # -> [[SearchResult, ...]]

What a search needs is one file per modality, the **search index** the evaluation stage writes
after it measured the decoder (catalog entry ``{modality}.search_index``, see
:func:`make_search_index`): the evaluated decoder checkpoint, the item table and the text-encoder
spec, loadable with ``torch.load(weights_only=True)``. The CLI reads it straight from
``data/06_models/<modality>/search_index.pt/<version>/`` without starting Kedro or importing
pandas (a search then costs little more than importing torch); the served MLflow model is the
same file. So by default each modality serves the decoder its newest evaluation measured, and the
numbers a user reads are those of the index they query.

``--version`` is a Kedro save version of the decoder (the timestamp folder under
data/06_models/<modality>/cart_decoder.pt/) and ``--run-id`` an MLflow run of a `kedro run`
(kedro-mlflow tags it with the Kedro session id, `run_id`, which is the save version of
everything that run wrote). Where no search index matches (a decoder evaluated by another run,
a project built before search indexes existed, ``dual_tower=True`` for the search page), the
same search index is assembled in memory from the project's Kedro catalog. Inference is the
evaluation stage's own code path (:class:`cart_pipeline.core.retrieval.cart.CartIndex`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas costs a search a third of a second: only the Kedro path imports it
    import pandas as pd

logger = logging.getLogger(__name__)


class SearchError(RuntimeError):
    """A problem the user can fix (no index yet, unknown version, empty query)."""


@dataclass
class SearchResult:
    query: str
    rank: int
    item_id: str
    modality: str
    score: float
    description: str
    media_path: str


def _find_project(start: Path) -> Path:
    for path in (start, *start.parents):
        if (path / "pyproject.toml").is_file() and (path / "conf" / "base").is_dir():
            return path
    raise SearchError(f"no Kedro project (pyproject.toml + conf/base) at or above {start}")


def _version_of_run(project: Path, run_id: str) -> str:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        run = mlflow.get_run(run_id)
    except Exception as error:
        raise SearchError(f"unknown MLflow run id {run_id!r}: {error}") from None
    version = run.data.tags.get("run_id")  # the Kedro session id = its save version
    if not version:
        raise SearchError(
            f"MLflow run {run_id} has no Kedro `run_id` tag (was it a `kedro run` of this project?)"
        )
    return version


TEXT_ENCODER_CACHE = Path("data/06_models/text_encoder")
SEARCH_INDEX_FORMAT = "cart-search-index/1"
# The catalog's "{modality}.search_index" (a test holds the two together): read without Kedro.
SEARCH_INDEX = "data/06_models/{modality}/search_index.pt"


def make_search_index(
    modality: str,
    cart_decoder: dict,
    candidates: pd.DataFrame,
    queries: pd.DataFrame,
    text_encoder_spec: dict,
    beam_size: int,
    device: str,
    metrics: dict[str, float] | None = None,
) -> dict:
    """Everything a search of one modality needs, as plain values (``weights_only`` loads it):
    the decoder checkpoint and its save version, the item table (id, media path, the first
    human description), the query encoder's spec, the evaluated beam size, the project's
    ``device`` and the CART metrics measured on this decoder."""
    from cart_pipeline.core.pairs import item_descriptions

    descriptions = candidates.item_id.map(item_descriptions(queries)).fillna("")
    return {
        "format": SEARCH_INDEX_FORMAT,
        "modality": modality,
        "decoder": {k: v for k, v in cart_decoder.items() if k != "saved_version"},
        "decoder_version": cart_decoder.get("saved_version"),
        "items": {
            "item_id": candidates.item_id.astype(str).tolist(),
            "media_path": candidates.media_path.astype(str).tolist(),
            "description": descriptions.astype(str).tolist(),
        },
        "text_encoder": dict(text_encoder_spec),
        "beam_size": int(beam_size),
        "device": str(device),
        "metrics": {name: float(value) for name, value in (metrics or {}).items()},
    }


def _saved_search_indexes(
    project: Path, modalities: list[str] | None, version: str | None
) -> list[dict] | None:
    """The newest saved search index of each modality (or all that have one), read straight
    from disk; with ``version``, the one whose decoder is that version. None when any is
    missing or unreadable: the caller then assembles them from the catalog, which also says
    what is wrong."""
    import torch

    folders = sorted((project / SEARCH_INDEX.split("{modality}")[0]).glob("*/search_index.pt"))
    found = {folder.parent.name: folder for folder in folders if folder.is_dir()}
    bundles = []
    for modality in modalities or sorted(found):
        folder = found.get(modality)
        saved = sorted(folder.glob("*/search_index.pt")) if folder else []
        if version:  # the version a run wrote its search index under is its decoder's...
            saved = [path for path in saved if path.parent.name == version]
        if not saved:
            return None
        try:
            bundle = torch.load(saved[-1], map_location="cpu", weights_only=True)
        except Exception as error:  # the catalog path reports it, naming the file
            logger.debug("search index %s unreadable: %s", saved[-1], error)
            return None
        # ... unless an evaluation-only run measured an older decoder: the catalog path then
        if bundle.get("format") != SEARCH_INDEX_FORMAT or (
            version and bundle.get("decoder_version") != version
        ):
            return None
        bundles.append(bundle)
    return bundles or None


def _search_text_encoder(project: Path | None, spec: dict, device):
    """The query encoder for search. MiniLM on the CPU runs as TorchScript (the same weights
    and outputs; it loads without importing transformers, which costs a search seconds),
    scripted once into the project's data/06_models/text_encoder/. Anything else, no project
    (a served model) or a project folder that cannot be written, loads as the pipeline does."""
    from cart_pipeline.pipelines.encoders import load_encoder

    options = {k: v for k, v in spec.items() if k != "name"}
    scriptable = {"model_path", "max_length", "batch_size"}
    if (
        project is None
        or spec["name"] != "all-MiniLM-L6-v2"
        or device.type != "cpu"
        or set(options) - scriptable
    ):
        return load_encoder(spec, device)
    from cart_pipeline.core.encoders.text import scripted_minilm

    try:
        return scripted_minilm(project / TEXT_ENCODER_CACHE, **options)
    except OSError as error:
        logger.warning("text encoder not cached (%s); loading it with transformers", error)
        return load_encoder(spec, device)


class Retriever:
    """One CART index per modality, built from search indexes (:func:`make_search_index`)."""

    def __init__(
        self,
        indexes: dict,
        items: dict[str, tuple[str, str]],
        load_seconds: float = 0.0,
        dual_towers: dict | None = None,
        dataset_root: str | Path | None = None,
    ):
        self.indexes = indexes  # modality -> CartIndex
        self.versions = {m: index.version for m, index in indexes.items()}  # -> decoder version
        self.dual_towers = dual_towers or {}  # modality -> DualTowerIndex (search page)
        self.items = items  # item_id -> (description, media_path)
        self.load_seconds = load_seconds
        self.dataset_root = Path(dataset_root) if dataset_root else None

    @classmethod
    def from_search_indexes(
        cls, bundles: list[dict], device: str | None = None, project: Path | None = None
    ) -> Retriever:
        """``device``: default the project's, as recorded in the search index; ``project``:
        where the scripted query encoder is cached (None: load it as the pipeline does)."""
        from cart_pipeline.core.device import resolve_device
        from cart_pipeline.core.errors import InputError
        from cart_pipeline.core.retrieval.cart import CartIndex

        started = time.perf_counter()
        specs = {json.dumps(b["text_encoder"], sort_keys=True) for b in bundles}
        if len(specs) > 1:  # one query encoding serves every modality
            raise SearchError(f"the modalities' indexes use different text encoders: {specs}")
        try:
            device = resolve_device(device or bundles[0]["device"])
        except InputError as error:
            raise SearchError(str(error)) from None
        text_encoder = _search_text_encoder(project, bundles[0]["text_encoder"], device)
        indexes, items = {}, {}
        for bundle in sorted(bundles, key=lambda b: b["modality"]):  # results in one order
            checkpoint = {**bundle["decoder"], "saved_version": bundle["decoder_version"]}
            indexes[bundle["modality"]] = CartIndex.from_checkpoint(
                checkpoint, text_encoder, device
            )
            table = bundle["items"]
            shown = zip(table["description"], table["media_path"], strict=True)
            items.update(zip(table["item_id"], shown, strict=True))
        return cls(indexes, items, time.perf_counter() - started)

    @classmethod
    def load(
        cls,
        project_path: str | Path | None = None,
        version: str | None = None,
        run_id: str | None = None,
        modalities: list[str] | None = None,
        device: str | None = None,
        dual_tower: bool = False,
    ) -> Retriever:
        """``device``: where the decoders run (default: the project's `device` parameter);
        ``dual_tower``: also load each modality's evaluated dual tower (``system="dual_tower"``)."""
        started = time.perf_counter()
        project = _find_project(Path(project_path or Path.cwd()).resolve())
        if run_id:
            version = _version_of_run(project, run_id)
        saved = None if dual_tower else _saved_search_indexes(project, modalities, version)
        if saved:
            retriever = cls.from_search_indexes(saved, device, project)
        else:
            # Kedro logs and warns on the console while it starts; stdout is for results only.
            with contextlib.redirect_stdout(sys.stderr):
                retriever = cls._load(project, version, modalities, device, dual_tower)
        retriever.load_seconds = time.perf_counter() - started
        return retriever

    @classmethod
    def _load(cls, project, version, modalities, device, dual_tower) -> Retriever:
        """The search indexes assembled from the project's Kedro catalog."""
        from kedro.config import MissingConfigException
        from kedro.framework.context.context import _convert_paths_to_absolute_posix
        from kedro.framework.project import settings
        from kedro.framework.startup import bootstrap_project
        from kedro.io.core import DatasetError, VersionNotFoundError

        from cart_pipeline.core.retrieval.dual_tower import DualTowerIndex
        from cart_pipeline.core.tables import column_to_matrix
        from cart_pipeline.pipelines.modalities import configured_modalities

        bootstrap_project(project)
        for name in ("kedro", "kedro_mlflow", "cart_pipeline"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # The project's config loader and catalog, as a session builds them, but no session:
        # its hooks (MLflow tracking, run journal) belong to `kedro run`, and importing MLflow
        # alone would cost a search seconds.
        config = settings.CONFIG_LOADER_CLASS(
            conf_source=str(project / settings.CONF_SOURCE), **settings.CONFIG_LOADER_ARGS
        )
        try:
            credentials = config["credentials"]
        except MissingConfigException:  # a project with no credentials file, like this one
            credentials = {}
        # relative filepaths resolved against the project, as KedroContext does (with its helper)
        catalog = settings.DATA_CATALOG_CLASS.from_config(
            _convert_paths_to_absolute_posix(project, config["catalog"]), credentials
        )
        params = config["parameters"]
        wanted = modalities or configured_modalities(project / "conf")
        unknown = set(wanted) - set(params.get("modalities", []))
        if unknown:
            raise SearchError(
                f"unknown modality {sorted(unknown)}; this project indexes {params.get('modalities')}"
            )

        # By default serve the decoders the newest metrics.json measured, not merely the newest
        # saved ones: a run killed after training but before evaluation leaves a newer decoder
        # that nothing has measured, and the numbers a user reads must be the index they query.
        evaluated = (
            catalog.load("metrics").get("models", {})
            if version is None and catalog.exists("metrics")
            else {}
        )
        bundles = []
        for modality in wanted:
            name = f"{modality}.cart_decoder"
            if not catalog.exists(name):
                raise SearchError(
                    f"no trained CART index for {modality!r}: {name} has no saved version yet. "
                    "Build it with `make run` (or `kedro run`), or just this index with "
                    f"`kedro run --namespaces {modality}`."
                )
            wanted_version = version or evaluated.get(modality, {}).get("cart_decoder")
            if version is None:
                newest = catalog.get(name).resolve_load_version()
                if wanted_version is None:
                    logger.warning(
                        "%s: no evaluation recorded; serving the newest version %s", name, newest
                    )
                elif newest != wanted_version:
                    logger.warning(
                        "%s: serving version %s, the one the newest metrics.json measured; the newer "
                        "version %s was never evaluated (an interrupted run? finish it with `kedro resume`)",
                        name,
                        wanted_version,
                        newest,
                    )
            try:
                checkpoint = catalog.load(name, version=wanted_version)
            except (DatasetError, VersionNotFoundError) as error:
                raise SearchError(
                    f"cannot load version {wanted_version!r} of {name}: {error}"
                ) from None
            bundles.append(
                make_search_index(
                    modality,
                    checkpoint,
                    catalog.load(f"{modality}.candidates"),
                    catalog.load(f"{modality}.queries"),
                    params["feature_extraction"]["text_encoder"],
                    params["evaluation"]["beam_size"],
                    params.get("device", "cpu"),
                )
            )
        retriever = cls.from_search_indexes(bundles, device, project)
        for modality in wanted if dual_tower else []:
            name = f"{modality}.dual_tower"
            tower_version = version or evaluated.get(modality, {}).get("dual_tower")
            features = catalog.load(f"{modality}.candidate_features")
            retriever.dual_towers[modality] = DualTowerIndex.from_checkpoint(
                catalog.load(name, version=tower_version),
                features.item_id.to_numpy(),
                column_to_matrix(features.embedding),
            )
        retriever.dataset_root = (
            Path(params["dataset_root"]) if params.get("dataset_root") else None
        )
        return retriever

    def search(
        self,
        queries: list[str],
        k: int = 10,
        modality: str | None = None,
        beam_size: int | None = None,
        system: str = "cart",
    ) -> list[list[SearchResult]]:
        """Top-k per query and modality index (scores are log-probs, comparable within one index).

        ``k`` (and ``beam_size``) must be >= 1; an index smaller than ``k`` returns all its items.
        ``system="dual_tower"``: the dense baseline's exact cosine search instead (loaded with
        ``Retriever.load(dual_tower=True)``); scores are cosines.
        """
        if isinstance(queries, str):
            queries = [queries]
        blank = [i + 1 for i, q in enumerate(queries) if not q or not q.strip()]
        if blank:
            raise SearchError(f"empty query (query {blank[0]} of {len(queries)})")
        if k < 1 or (beam_size is not None and beam_size < 1):
            raise SearchError(
                f"top-k and beam size must be at least 1 (got top-k {k}, beam size {beam_size})"
            )
        indexes = {"cart": self.indexes, "dual_tower": self.dual_towers}.get(system)
        if indexes is None:
            raise SearchError(f"unknown system {system!r}: cart or dual_tower")
        if modality and modality not in indexes:
            raise SearchError(
                f"no {modality!r} {system} index loaded; available: {sorted(indexes)}"
            )
        results: list[list[SearchResult]] = [[] for _ in queries]
        self.last_timing = {}
        encodings: dict[int, tuple[list, float]] = {}  # per text encoder: states, seconds
        for name, index in indexes.items():
            if modality and name != modality:
                continue
            # k past the corpus size returns the whole corpus, ranked; nothing is decoded for it
            k_here = min(k, len(index.item_ids))
            if system == "cart":
                # a beam of at least 10 even for k=1: greedy decoding misses identifiers whose
                # first token is not the locally best one
                # indexes that share a text encoder (they all do when loaded together) share
                # one encoding of the queries
                if id(index.text_encoder) not in encodings:
                    started = time.perf_counter()
                    states = index.encode(list(queries))
                    encodings[id(index.text_encoder)] = states, time.perf_counter() - started
                states, encode_s = encodings[id(index.text_encoder)]
                top, scores, timing = index.search(
                    list(queries),
                    top_k=k_here,
                    beam_size=beam_size or max(k_here, 10),
                    encoded=states,
                )
                timing["encode_s"] = encode_s
            else:  # the query tower reads the text encoder's sentence vectors, as in training
                encoder = next(iter(self.indexes.values())).text_encoder
                started = time.perf_counter()
                features = encoder.encode(list(queries))
                top, scores, timing = index.search(features, top_k=k_here)
                timing["encode_s"] = time.perf_counter() - started - timing["decode_s"]
                top, scores = top[:, :k_here], scores[:, :k_here]  # ties past k: not shown
            self.last_timing[name] = timing
            for q, (row_items, row_scores) in enumerate(zip(top, scores, strict=True)):
                hits = [(i, s) for i, s in zip(row_items, row_scores, strict=True) if i >= 0]
                results[q] += [
                    self._result(queries[q], rank, str(index.item_ids[i]), name, float(score))
                    for rank, (i, score) in enumerate(hits, start=1)
                ]
        return results

    def _result(self, query: str, rank: int, item_id: str, modality: str, score: float):
        description, media_path = self.items.get(item_id, ("", ""))
        return SearchResult(query, rank, item_id, modality, score, description, media_path)


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
    parser.add_argument("--version", help="a Kedro save version of the artifacts (default: latest)")
    parser.add_argument("--run-id", help="an MLflow run id whose artifacts to use")
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
        help="start the search page (CART and the dual tower side by side) instead",
    )
    parser.add_argument("--host", default="127.0.0.1", help="--serve: address (default local)")
    parser.add_argument("--port", type=int, default=8765, help="--serve: port (default 8765)")
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

    def load(dual_tower: bool = False) -> Retriever:
        retriever = Retriever.load(
            args.project,
            version=args.version,
            run_id=args.run_id,
            modalities=[args.modality] if args.modality else None,
            device=args.device,
            dual_tower=dual_tower,
        )
        if args.int8:
            retriever.indexes = {m: index.int8() for m, index in retriever.indexes.items()}
        return retriever

    try:
        if args.serve:
            from cart_pipeline.web import serve

            serve(load(dual_tower=True), args.host, args.port)
            return 0
        if args.queries:
            if not args.queries.is_file():
                raise SearchError(f"queries file not found: {args.queries}")
            queries = [
                line.strip()
                for line in args.queries.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
            if not queries:
                raise SearchError(f"no queries in {args.queries}")
        elif args.query is not None:
            queries = [args.query]
        else:
            raise SearchError('give a query, e.g. cart-search "a brown hen", or --queries FILE')
        if not all(q.strip() for q in queries):
            raise SearchError("empty query")
        retriever = load()
        started = time.perf_counter()
        results = retriever.search(
            queries, k=args.top_k, modality=args.modality, beam_size=args.beam_size
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
        served = ", ".join(f"{m} {v}" for m, v in retriever.versions.items())
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
