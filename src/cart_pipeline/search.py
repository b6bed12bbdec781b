"""Search a trained index from Python (the `cart-search` CLI and the search page use this).

    from cart_pipeline.search import Retriever
    retriever = Retriever.load()                  # the published indexes of this project
    retriever.search(["a brown hen"], k=5)        # -> [[SearchResult, ...]]

What a CART search needs is one file per modality, the **search index** the serving stage
writes after the evaluation measured the decoder (catalog entry ``{modality}.search_index``,
:func:`cart_pipeline.core.search_index.make_search_index`): the evaluated decoder checkpoint,
the item table and the text-encoder spec, loadable with ``torch.load(weights_only=True)``. It
is read straight from ``<data_dir>/06_models/<modality>/search_index.pt/<version>/`` without
starting Kedro or importing pandas (a search then costs little more than importing torch); the
served MLflow model is the same file. So each modality serves the decoder its newest
publishing run measured, and the numbers a user reads are those of the index they query.

``version`` is a Kedro save version of the decoder (the timestamp folder under
<data_dir>/06_models/<modality>/cart_decoder.pt/) and ``run_id`` an MLflow run of a `kedro run`
(kedro-mlflow tags it with the Kedro session id, `run_id`, which is the save version of
everything that run wrote). Where no search index matches (a decoder evaluated by a run that
did not publish), the same search index is assembled from the project's Kedro catalog. Every
search index carries the baselines the evaluation measured beside CART (``system=...``). CART's inference is the evaluation stage's own code path
(:class:`cart_pipeline.core.retrieval.cart.CartIndex`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from cart_pipeline.core.errors import InputError
from cart_pipeline.core.search_index import (
    SEARCH_INDEX_FORMAT,
    baseline_bundle,
    make_search_index,
)

logger = logging.getLogger(__name__)

# Every system a modality can answer with, in the order pages and tables show them.
SYSTEMS = ("cart", "cart_rerank", "cart_lookup_rerank", "dual_tower", "pair_lookup", "zero_shot")
RERANKED_BY = {"cart_rerank": "dual_tower", "cart_lookup_rerank": "pair_lookup"}
TEXT_ENCODER_CACHE = Path("data/06_models/text_encoder")
# The catalog's "{modality}.search_index" (a test holds the two together): read without Kedro.
SEARCH_INDEX = "{data_dir}/06_models/{modality}/search_index.pt"


class SearchError(InputError):
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


def find_project(start: Path) -> Path:
    for path in (start, *start.parents):
        if (path / "pyproject.toml").is_file() and (path / "conf" / "base").is_dir():
            return path
    raise SearchError(f"no Kedro project (pyproject.toml + conf/base) at or above {start}")


def global_path(project: Path, key: str, default: str, env: str | None = None) -> Path:
    """An environment's global path ``key`` (conf/base/globals.yml, overridden by
    conf/<env>/), read without Kedro, relative to the project."""
    value = default
    for folder in ("base", env or "local"):
        path = project / "conf" / folder / "globals.yml"
        if path.is_file():
            value = (yaml.safe_load(path.read_text()) or {}).get(key, value)
    return project / value


def data_dir(project: Path, env: str | None = None) -> Path:
    """An environment's `data_dir`, where its runs write."""
    return global_path(project, "data_dir", "data", env)


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


def _saved_search_indexes(
    folder: Path, modalities: list[str] | None, version: str | None
) -> list[dict] | None:
    """The newest saved search index of each modality (or all that have one) under the data
    folder, read straight from disk; with ``version``, the one whose decoder is that version.
    None when any is missing or unreadable: the caller then assembles them from the catalog,
    which also says what is wrong."""
    import torch

    found = {
        path.parent.name: path
        for path in sorted(folder.glob("06_models/*/search_index.pt"))
        if path.is_dir()
    }
    bundles = []
    for modality in modalities or sorted(found):
        saved = sorted(found[modality].glob("*/search_index.pt")) if modality in found else []
        if version:  # the version a run wrote its search index under is its decoder's...
            saved = [path for path in saved if path.parent.name == version]
        if not saved:
            return None
        try:
            bundle = torch.load(saved[-1], map_location="cpu", weights_only=True)
        except Exception as error:  # the catalog path reports it, naming the file
            logger.debug("search index %s unreadable: %s", saved[-1], error)
            return None
        # ... unless an evaluation-only run measured an older decoder: the catalog path then.
        # A grown index (add_items) is the version of the run that grew it.
        if bundle.get("format") != SEARCH_INDEX_FORMAT or (
            version and bundle.get("decoder_version") != version and not bundle.get("additions")
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


def _absolute(project: Path, catalog: dict) -> dict:
    """The catalog's relative file paths resolved against the project, as a Kedro session
    resolves them (`~`-free local paths only; URLs such as s3://... stay as they are)."""
    resolved = {}
    for name, entry in catalog.items():
        if isinstance(entry, dict) and isinstance(entry.get("filepath"), str):
            path = entry["filepath"]
            if "://" not in path and not Path(path).is_absolute():
                entry = {**entry, "filepath": (project / path).as_posix()}
        resolved[name] = entry
    return resolved


class Retriever:
    """One CART index per modality, built from search indexes, and optionally the baselines
    the evaluation measured beside it (the search page shows every system)."""

    def __init__(
        self,
        indexes: dict,
        items: dict[str, tuple[str, str]],
        load_seconds: float = 0.0,
        baselines: dict | None = None,
        dataset_root: str | Path | None = None,
        beam_sizes: dict[str, int] | None = None,
    ):
        self.indexes = indexes  # modality -> CartIndex
        self.versions = {m: index.version for m, index in indexes.items()}  # -> decoder version
        self.items_added: dict[str, int] = {}  # modality -> items add_items put in its index
        # modality -> {system: what its search index holds for it}, built on first use (a
        # CART-only search never imports what the baselines need)
        self.baselines = baselines or {}
        self._built: dict[tuple[str, str], object] = {}
        self.items = items  # item_id -> (description, media_path)
        self.load_seconds = load_seconds
        self.dataset_root = Path(dataset_root) if dataset_root else None
        self.beam_sizes = beam_sizes or {}  # the beam each index was evaluated with

    def systems(self, modality: str) -> list[str]:
        """The systems this retriever can answer ``modality``'s queries with."""
        have = {"cart", *self.baselines.get(modality, {})}
        # CART's beam reordered by a baseline, as evaluated
        have |= {hybrid for hybrid, by in RERANKED_BY.items() if by in have}
        return [system for system in SYSTEMS if system in have]

    @classmethod
    def from_search_indexes(
        cls, bundles: list[dict], device: str | None = None, project: Path | None = None
    ) -> Retriever:
        """``device``: default the project's, as recorded in the search index; ``project``:
        where the scripted query encoder is cached (None: load it as the pipeline does)."""
        from cart_pipeline.core.device import resolve_device
        from cart_pipeline.core.retrieval.cart import CartIndex

        started = time.perf_counter()
        specs = {repr(sorted(b["text_encoder"].items())) for b in bundles}
        if len(specs) > 1:  # one query encoding serves every modality
            raise SearchError(f"the modalities' indexes use different text encoders: {specs}")
        try:
            device = resolve_device(device or bundles[0]["device"])
        except InputError as error:
            raise SearchError(str(error)) from None
        text_encoder = _search_text_encoder(project, bundles[0]["text_encoder"], device)
        indexes, items, beams, baselines = {}, {}, {}, {}
        for bundle in sorted(bundles, key=lambda b: b["modality"]):  # results in one order
            checkpoint = {**bundle["decoder"], "saved_version": bundle["decoder_version"]}
            modality = bundle["modality"]
            indexes[modality] = CartIndex.from_checkpoint(checkpoint, text_encoder, device)
            beams[modality] = int(bundle["beam_size"])
            baselines[modality] = bundle.get("baselines") or {}
            table = bundle["items"]
            shown = zip(table["description"], table["media_path"], strict=True)
            items.update(zip(table["item_id"], shown, strict=True))
        retriever = cls(indexes, items, time.perf_counter() - started, baselines, beam_sizes=beams)
        retriever.items_added = {
            b["modality"]: sum(a["items"] for a in b.get("additions", [])) for b in bundles
        }
        return retriever

    @classmethod
    def load(
        cls,
        project_path: str | Path | None = None,
        version: str | None = None,
        run_id: str | None = None,
        modalities: list[str] | None = None,
        device: str | None = None,
        baselines: bool = False,
        env: str | None = None,
    ) -> Retriever:
        """``device``: where the decoders run (default: the project's `device` parameter);
        ``baselines``: also load each modality's evaluated baselines (``system=...``);
        ``env``: the Kedro environment (collection) whose indexes to load (default: local)."""
        started = time.perf_counter()
        project = find_project(Path(project_path or Path.cwd()).resolve())
        if run_id:
            version = _version_of_run(project, run_id)
        folder = data_dir(project, env)
        saved = _saved_search_indexes(folder, modalities, version)
        if saved and baselines and not all(bundle.get("baselines") for bundle in saved):
            saved = None
        if saved:
            retriever = cls.from_search_indexes(saved, device, project)
            # the media the page shows (a saved index holds no paths of this machine)
            retriever.dataset_root = global_path(project, "dataset_root", "", env)
        else:
            # Kedro logs and warns on the console while it starts; stdout is for results only.
            with contextlib.redirect_stdout(sys.stderr):
                retriever = cls._load(project, env, version, modalities, device)
        retriever.load_seconds = time.perf_counter() - started
        return retriever

    @classmethod
    def _load(cls, project, env, version, modalities, device) -> Retriever:
        """The search indexes assembled from the project's Kedro catalog."""
        from kedro.config import MissingConfigException
        from kedro.framework.project import settings
        from kedro.framework.startup import bootstrap_project
        from kedro.io.core import DatasetError, VersionNotFoundError

        bootstrap_project(project)
        for name in ("kedro", "kedro_mlflow", "cart_pipeline"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # The project's config loader and catalog, as a session builds them, but no session:
        # its hooks (MLflow tracking, run journal) belong to `kedro run`, and importing MLflow
        # alone would cost a search seconds.
        config = settings.CONFIG_LOADER_CLASS(
            conf_source=str(project / settings.CONF_SOURCE),
            env=env,
            **settings.CONFIG_LOADER_ARGS,
        )
        try:
            credentials = config["credentials"]
        except MissingConfigException:  # a project with no credentials file, like this one
            credentials = {}
        catalog = settings.DATA_CATALOG_CLASS.from_config(
            _absolute(project, config["catalog"]), credentials
        )
        params = config["parameters"]
        wanted = modalities or list(params["modalities"])
        unknown = set(wanted) - set(params["modalities"])
        if unknown:
            raise SearchError(
                f"unknown modality {sorted(unknown)}; this project indexes {params['modalities']}"
            )

        # By default serve the decoders the newest metrics.json measured, not merely the newest
        # saved ones: a run killed after training but before evaluation leaves a newer decoder
        # that nothing has measured, and the numbers a user reads must be the index they query.
        metrics = catalog.load("metrics") if catalog.exists("metrics") else {}
        evaluated = metrics.get("models", {}) if version is None else {}
        bundles = []
        for modality in wanted:
            name = f"{modality}.cart_decoder"
            if not catalog.exists(name):
                raise SearchError(
                    f"no trained CART index for {modality!r}: {name} has no saved version yet. "
                    "Build it with `make run` (or `kedro run`)."
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
            measured = metrics.get("by_modality", {}).get(modality, {})
            tower = version or evaluated.get(modality, {}).get("dual_tower")
            baselines = baseline_bundle(
                catalog.load(f"{modality}.dual_tower", version=tower),
                catalog.load(f"{modality}.candidate_features"),
                catalog.load(f"{modality}.training_pairs"),
                catalog.load(f"{modality}.query_features"),
                catalog.load(f"{modality}.pseudo_query_features"),
                measured.get("pair_lookup", {}).get("temperature"),
                params["feature_extraction"]["encoders"][modality],
            )
            bundles.append(
                make_search_index(
                    modality,
                    checkpoint,
                    catalog.load(f"{modality}.candidates"),
                    catalog.load(f"{modality}.queries"),
                    params["feature_extraction"]["text_encoder"],
                    params["evaluation"]["beam_size"],
                    params["device"],
                    baselines=baselines,
                )
            )
        retriever = cls.from_search_indexes(bundles, device, project)
        retriever.dataset_root = Path(params["dataset_root"])
        return retriever

    def search(
        self,
        queries: list[str],
        k: int = 10,
        modality: str | None = None,
        beam_size: int | None = None,
        system: str = "cart",
    ) -> list[list[SearchResult]]:
        """Top-k per query and modality index. Scores are comparable within one modality and
        system: CART's are log-probabilities of the identifier, the dual tower's (and CART +
        rerank's) cosines, the pair lookup's its soft vote.

        ``k`` (and ``beam_size``) must be >= 1; an index smaller than ``k`` returns all its items.
        ``system``: one of :meth:`systems`.
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
        if system not in SYSTEMS:
            raise SearchError(f"unknown system {system!r}: one of {', '.join(SYSTEMS)}")
        if modality and modality not in self.indexes:
            raise SearchError(f"no {modality!r} index loaded; available: {sorted(self.indexes)}")
        results: list[list[SearchResult]] = [[] for _ in queries]
        self.last_timing = {}
        encodings: dict[int, tuple[list, float]] = {}  # per text encoder: states, seconds
        for name, index in self.indexes.items():
            if modality and name != modality:
                continue
            if system not in self.systems(name):
                raise SearchError(
                    f"no {system} index for {name!r}: it has {', '.join(self.systems(name))}"
                )
            # k past the corpus size returns the whole corpus, ranked; nothing is decoded for it
            k_here = min(k, len(index.item_ids))
            started = time.perf_counter()
            if system in ("cart", *RERANKED_BY):
                # indexes that share a text encoder (they all do when loaded together) share
                # one encoding of the queries
                if id(index.text_encoder) not in encodings:
                    states = index.encode(list(queries))
                    encodings[id(index.text_encoder)] = states, time.perf_counter() - started
                states, encode_s = encodings[id(index.text_encoder)]
                # a beam of at least 10 even for k=1: greedy decoding misses identifiers whose
                # first token is not the locally best one; a rerank reorders the beam it was
                # evaluated with
                beam = beam_size or max(k_here, 10)
                depth = k_here
                if system in RERANKED_BY:
                    beam = depth = min(
                        max(self.beam_sizes.get(name, beam), k_here), len(index.item_ids)
                    )
                top, scores, timing = index.search(
                    list(queries), top_k=depth, beam_size=beam, encoded=states
                )
                timing["encode_s"] = encode_s
                if system in RERANKED_BY:
                    top, scores = self._rerank(name, RERANKED_BY[system], queries, top, k_here)
            elif system == "zero_shot":  # the aligned encoder embeds the query itself
                baseline = self.baseline(name, system)
                top, scores = baseline.search(list(queries), k_here)
                timing = {}
            else:  # the baselines read the text encoder's sentence vectors, as in training
                encoder = next(iter(self.indexes.values())).text_encoder
                features = encoder.encode(list(queries))
                baseline = self.baseline(name, system)
                if system == "dual_tower":
                    top, scores, timing = baseline.search(features, top_k=k_here)
                else:
                    top, scores = baseline.search(features, k_here)
                    timing = {}
                top, scores = top[:, :k_here], scores[:, :k_here]  # ties past k: not shown
            timing["seconds"] = time.perf_counter() - started
            self.last_timing[name] = timing
            item_ids = index.item_ids if system in ("cart", *RERANKED_BY) else baseline.item_ids
            for q, (row_items, row_scores) in enumerate(zip(top, scores, strict=True)):
                hits = [(i, s) for i, s in zip(row_items, row_scores, strict=True) if i >= 0]
                results[q] += [
                    self._result(queries[q], rank, str(item_ids[i]), name, float(score))
                    for rank, (i, score) in enumerate(hits, start=1)
                ]
        return results

    def baseline(self, modality: str, system: str):
        """The searchable baseline ``system`` of ``modality`` (built once, from its bundle)."""
        if (modality, system) not in self._built:
            self._built[(modality, system)] = _baseline(system, self.baselines[modality][system])
        return self._built[(modality, system)]

    def _rerank(self, modality: str, by: str, queries: list[str], top: np.ndarray, k: int):
        """CART's beam (Q, B) reordered by baseline ``by`` (the dual tower's cosine or the
        pair lookup's vote over each candidate's texts), as the evaluation's hybrids (a stable
        sort: equal scores keep CART's order) -> top k of it."""
        baseline = self.baseline(modality, by)
        encoder = next(iter(self.indexes.values())).text_encoder
        row_of = {item: row for row, item in enumerate(baseline.item_ids)}
        cart_ids = self.indexes[modality].item_ids
        rows = np.array([[row_of[cart_ids[i]] if i >= 0 else -1 for i in beam] for beam in top])
        scores = baseline.rescore(encoder.encode(list(queries)), rows)  # (Q, B), -inf for -1
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(top, order, 1), np.take_along_axis(scores, order, 1)

    def _result(self, query: str, rank: int, item_id: str, modality: str, score: float):
        description, media_path = self.items.get(item_id, ("", ""))
        return SearchResult(query, rank, item_id, modality, score, description, media_path)


@dataclass
class ZeroShotSearch:
    """An aligned encoder's own search (CLIP, CLAP): the query's text embedding against the
    items' embeddings, exact cosine. The encoder loads from its local weights on first use."""

    encoder_spec: dict
    item_ids: np.ndarray
    item_embeddings: np.ndarray  # (N, D) unit norm

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        from cart_pipeline.core.metrics import top_k_with_ties
        from cart_pipeline.pipelines.encoders import load_encoder

        encoder = load_encoder(self.encoder_spec)
        scores = encoder.encode_text(list(queries)) @ self.item_embeddings.T  # (Q, N)
        return top_k_with_ties(scores.astype(np.float64), k)


def _baseline(system: str, part: dict):
    """A baseline, built from its part of a search index (see ``core.search_index``)."""
    if system == "dual_tower":
        from cart_pipeline.core.retrieval.dual_tower import DualTowerIndex

        checkpoint = {**part["checkpoint"], "saved_version": part["version"]}
        return DualTowerIndex.from_checkpoint(
            checkpoint, np.asarray(part["item_ids"]), part["item_features"].numpy()
        )
    if system == "pair_lookup":
        from cart_pipeline.core.retrieval.pair_lookup import PairLookup

        lookup = PairLookup(
            part["text_embeddings"].numpy(),
            part["pair_items"].numpy(),
            len(part["item_ids"]),
            float(part["temperature"]),
        )
        lookup.item_ids = np.asarray(part["item_ids"])  # what its row indices name
        return lookup
    if system == "zero_shot":
        return ZeroShotSearch(
            part["encoder"], np.asarray(part["item_ids"]), part["item_embeddings"].numpy()
        )
    raise SearchError(f"no baseline {system!r} in a search index")
