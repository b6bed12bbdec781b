"""The systems under test, built over one synthetic corpus: CART through the project's own
`CartIndex`, and dense search (exact torch, FAISS flat, HNSW, IVF-PQ).

Every system answers the same batch of query *texts*: CART's `CartIndex.search` encodes them
with MiniLM (all layers) and decodes; a dense system encodes them with the same MiniLM (its
sentence vector) and then searches the corpus with the batch's synthetic query vectors, the
vectors a query tower would give in a real deployment. Both times come back separately, so
every system has a search-only and an encoding-included rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from cart_pipeline.core.decoder import CartDecoder, DecoderConfig, IdentifierTrie
from cart_pipeline.core.quantize.ids import fine_codes_for_variant, identifiers_for_variant
from cart_pipeline.core.quantize.kmeans import default_n_clusters, fit_kmeans
from cart_pipeline.core.quantize.rqvae import RQVAEConfig
from cart_pipeline.core.retrieval.cart import CartIndex
from cart_pipeline.core.tables import int_lists_to_matrix

DIM = 512
TOP_K = 10

ADJECTIVES = [
    "brown",
    "small",
    "red",
    "happy",
    "old",
    "shiny",
    "wooden",
    "striped",
    "tiny",
    "green",
]
NOUNS = ["hen", "dog", "guitar", "truck", "apple", "house", "bird", "boat", "clock", "flower"]


def make_vectors(n: int, n_modes: int, sigma: float, seed: int, stream: int) -> np.ndarray:
    """n unit vectors (n, DIM) float32 from a Gaussian mixture.

    Mode centres ~ N(0, I/DIM), drawn from ``seed`` alone so every corpus size and the queries
    share them; each point picks a mode uniformly, adds sigma * N(0, I/DIM) and is
    L2-normalised (cosine = inner product). ``stream`` separates corpus (0) and queries (1).
    """
    centres = np.random.default_rng(seed).standard_normal((n_modes, DIM), dtype=np.float32)
    centres /= math.sqrt(DIM)
    rng = np.random.default_rng([seed, stream])
    x = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, 100_000):  # blocks bound the temporaries
        b = x[s : s + 100_000]
        b[:] = rng.standard_normal(b.shape, dtype=np.float32)
        b *= sigma / math.sqrt(DIM)
        b += centres[rng.integers(0, n_modes, len(b))]
        b /= np.linalg.norm(b, axis=1, keepdims=True)
    return x


def query_texts(n: int, seed: int) -> list[str]:
    """Short seeded queries ("a red hen next to a boat"), the length of the default set's."""
    rng = np.random.default_rng(seed)
    return [
        f"a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} next to a {rng.choice(NOUNS)}"
        for _ in range(n)
    ]


# -- CART ----------------------------------------------------------------------------------------
def build_identifiers(
    x: np.ndarray, seed: int, rqvae_epochs: int, rqvae_train_max: int
) -> tuple[pd.DataFrame, object, dict, dict]:
    """The identifier pipeline's own calls: coarse K-Means, RQ-VAE on the residual, unique
    token. -> (identifier frame with item_id and tokens, vocabulary, seconds per build stage,
    identifier statistics)."""
    n, seconds = len(x), {}
    started = time.perf_counter()
    k = default_n_clusters(n)
    kmeans = fit_kmeans(x, k, seed=seed)
    seconds["kmeans_s"] = time.perf_counter() - started

    started = time.perf_counter()
    rq_config = RQVAEConfig(
        codebook_size=64,
        epochs=rqvae_epochs,
        batch_size=256,
        seed=seed,
        train_max_items=rqvae_train_max,
    )
    codes = fine_codes_for_variant("cart", x, kmeans, rq_config)
    seconds["rqvae_s"] = time.perf_counter() - started

    started = time.perf_counter()
    item_ids = np.strings.add("c", np.strings.zfill(np.arange(n).astype(str), 8))
    frame, vocab, id_stats = identifiers_for_variant(
        "cart", item_ids, codes.coarse, codes.fine, codes.coarse_size, codes.fine_size
    )
    seconds["ids_s"] = time.perf_counter() - started
    stats = {
        "n_clusters": k,
        "id_length": vocab.length,
        "vocab_size": vocab.size,
        "collision_rate": id_stats["collision_rate"],
        "max_collision_group": id_stats["max_collision_group"],
    }
    return frame, vocab, seconds, stats


def build_cart(
    x: np.ndarray, text_encoder, seed: int, rqvae_epochs: int, rqvae_train_max: int
) -> tuple[CartIndex, dict, dict]:
    """Identifiers (`build_identifiers`), their trie and a default-size decoder, untrained:
    the work of constrained beam search (beams x steps x layers, trie look-ups) does not
    depend on the weights. -> (index, seconds per build stage, identifier statistics)."""
    frame, vocab, seconds, stats = build_identifiers(x, seed, rqvae_epochs, rqvae_train_max)
    started = time.perf_counter()
    trie = IdentifierTrie.from_tokens(int_lists_to_matrix(frame["tokens"]))
    seconds["ids_and_trie_s"] = seconds.pop("ids_s") + time.perf_counter() - started

    torch.manual_seed(seed)
    decoder = CartDecoder(
        DecoderConfig(vocab_size=vocab.size, position_ranges=vocab.position_ranges())
    ).eval()
    index = CartIndex(decoder, trie, frame["item_id"].to_numpy(), text_encoder)
    return index, seconds, {**stats, "trie_nodes": trie.n_nodes}


def cart_bytes(index: CartIndex) -> int:
    """What search holds in memory: the trie arrays and the decoder weights (float32, or the
    int8 copy's packed weights)."""
    return index.trie.nbytes() + sum(map(_tensor_bytes, index.decoder.state_dict().values()))


def _tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):  # an int8 layer's packed (weight, bias)
        return sum(map(_tensor_bytes, value))
    return 0


def cart_runner(index: CartIndex, texts: list[str], beam: int) -> Callable[[], tuple[float, float]]:
    def run() -> tuple[float, float]:
        # a beam of b finds at most b identifiers: beam 1 and 5 return that many, not TOP_K
        k = min(TOP_K, beam)
        _, _, timing = index.search(texts, top_k=k, beam_size=beam, batch_size=len(texts))
        return timing["encode_s"], timing["decode_s"]

    return run


# -- dense ---------------------------------------------------------------------------------------
def dense_runner(
    search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, texts: list[str], encoder
) -> Callable[[], tuple[float, float]]:
    """Encode the batch's texts (timed), then search its vectors (timed)."""

    def run() -> tuple[float, float]:
        t0 = time.perf_counter()
        encoder.encode(texts)
        t1 = time.perf_counter()
        search(queries)
        return t1 - t0, time.perf_counter() - t1

    return run


def exact_torch(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Exact cosine search as `core.retrieval.dual_tower.search` does it: one matmul + topk."""
    corpus = torch.from_numpy(x)
    return lambda q: (torch.from_numpy(q) @ corpus.T).topk(TOP_K, dim=-1).indices.numpy()


def faiss_bytes(index) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def faiss_flat(x: np.ndarray):
    """IndexFlatIP with its BLAS path forced: faiss sets ``distance_compute_blas_threshold``
    to 128000 queries, so a batch of 100 would otherwise scan per query (5-10x slower)."""
    import faiss

    index = faiss.IndexFlatIP(DIM)
    index.add(x)

    def search(q: np.ndarray) -> np.ndarray:
        default, faiss.cvar.distance_compute_blas_threshold = (
            faiss.cvar.distance_compute_blas_threshold,
            20,
        )
        try:
            return index.search(q, TOP_K)[1]
        finally:
            faiss.cvar.distance_compute_blas_threshold = default

    return index, search


def faiss_hnsw(x: np.ndarray, m: int, ef_construction: int):
    import faiss

    index = faiss.IndexHNSWFlat(DIM, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(x)

    def searcher(ef_search: int):
        def search(q: np.ndarray) -> np.ndarray:
            index.hnsw.efSearch = ef_search
            return index.search(q, TOP_K)[1]

        return search

    return index, searcher


def faiss_ivfpq(x: np.ndarray, code_bytes: int, seed: int, train_max: int = 100_000):
    """IVF (sqrt(N) lists) + product quantisation to ``code_bytes`` bytes per vector: the
    dense index of a memory budget like CART's. Trained on a seeded sample of the corpus."""
    import faiss

    nlist = default_n_clusters(len(x))
    quantizer = faiss.IndexFlatIP(DIM)
    index = faiss.IndexIVFPQ(quantizer, DIM, nlist, code_bytes, 8, faiss.METRIC_INNER_PRODUCT)
    rows = np.random.default_rng(seed).permutation(len(x))[:train_max]
    index.train(x[np.sort(rows)])
    index.add(x)

    def searcher(nprobe: int):
        def search(q: np.ndarray) -> np.ndarray:
            index.nprobe = nprobe
            return index.search(q, TOP_K)[1]

        return search

    return index, searcher
