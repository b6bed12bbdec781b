"""Scale rehearsal: a synthetic 1M-item corpus through every CART stage, wall time and peak
memory per stage, on this machine. Not part of the test suite.

    python -m benchmarks.scale_rehearsal                       # 1M items (~15 min on 2 cores)
    python -m benchmarks.scale_rehearsal --items 100000        # a quick check

Each stage runs in its own process (``--stage``), reading what the previous one saved under
``--work``, so its peak RSS (``os.wait4``) is its own: corpus (seeded Gaussian-mixture 512-d
vectors, as benchmarks/efficiency), coarse K-Means, RQ-VAE (trained on a seeded sample,
encodes all), identifiers + trie, decoder training (one epoch over a sample of items with
synthetic texts: the text-item relation is arbitrary, so this times the training, it does not
learn retrieval), and search (1000 queries, beam 10, 1 thread). The feature-shaped stage is
measured separately on real media: the shipped images, repeated into a corpus of
``--feature-items``, encoded by the pipeline's own ``extract_candidate_features`` in one
process and then in shards on a Dask LocalCluster of 2 workers. Writes
benchmarks/results/scale_rehearsal.{csv,json} and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.runs import markdown_table

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = PROJECT / "data" / "01_raw" / "tuxpaint"
RESULTS = PROJECT / "benchmarks" / "results"
STAGES = ("corpus", "coarse", "rqvae", "identifiers", "decoder", "search")
log = logging.getLogger("benchmarks.scale_rehearsal")


def stage_corpus(work: Path, args) -> dict:
    from benchmarks.efficiency.systems import make_vectors

    x = make_vectors(args.items, 4096, 0.5, args.seed, stream=0)
    np.save(work / "x.npy", x)
    return {"bytes": int(x.nbytes)}


def stage_coarse(work: Path, args) -> dict:
    from cart_pipeline.core.quantize.kmeans import default_n_clusters, fit_kmeans

    x = np.load(work / "x.npy", mmap_mode="r")
    k = default_n_clusters(len(x))
    result = fit_kmeans(np.asarray(x), k, seed=args.seed)
    np.savez(work / "kmeans.npz", **vars(result))
    return {"k": k}


def stage_rqvae(work: Path, args) -> dict:
    from cart_pipeline.core.quantize.ids import fine_codes_for_variant
    from cart_pipeline.core.quantize.kmeans import KMeansResult
    from cart_pipeline.core.quantize.rqvae import RQVAEConfig

    x = np.load(work / "x.npy")
    kmeans = KMeansResult(**np.load(work / "kmeans.npz"))
    config = RQVAEConfig(
        codebook_size=64,
        epochs=args.rqvae_epochs,
        batch_size=256,
        seed=args.seed,
        train_max_items=args.sample,
    )
    codes = fine_codes_for_variant("cart", x, kmeans, config)
    sizes = np.array([codes.coarse_size, codes.fine_size])
    np.savez(work / "codes.npz", coarse=codes.coarse, fine=codes.fine, sizes=sizes)
    return {"coarse_size": codes.coarse_size, "fine_size": codes.fine_size}


def stage_identifiers(work: Path, args) -> dict:
    from cart_pipeline.core.decoder import IdentifierTrie
    from cart_pipeline.core.quantize.ids import identifiers_for_variant
    from cart_pipeline.core.tables import int_lists_to_matrix

    codes = np.load(work / "codes.npz")
    n = len(codes["coarse"])
    item_ids = np.strings.add("c", np.strings.zfill(np.arange(n).astype(str), 8))
    coarse_size, fine_size = (int(s) for s in codes["sizes"])
    frame, vocab, stats = identifiers_for_variant(
        "cart", item_ids, codes["coarse"], codes["fine"], coarse_size, fine_size
    )
    tokens = int_lists_to_matrix(frame["tokens"])
    trie = IdentifierTrie.from_tokens(tokens)
    np.save(work / "tokens.npy", tokens)
    (work / "vocab.json").write_text(json.dumps(vocab.to_dict()))
    return {
        "vocab": vocab.size,
        "trie_nodes": trie.n_nodes,
        "collision_rate": stats["collision_rate"],
    }


def _decoder(work: Path):
    import torch

    from cart_pipeline.core.decoder import CartDecoder, DecoderConfig
    from cart_pipeline.core.quantize.ids import Vocabulary

    vocab = Vocabulary.from_dict(json.loads((work / "vocab.json").read_text()))
    torch.manual_seed(0)
    config = DecoderConfig(vocab_size=vocab.size, position_ranges=vocab.position_ranges())
    return CartDecoder(config), torch.from_numpy(np.load(work / "tokens.npy"))


def stage_decoder(work: Path, args) -> dict:
    import torch

    from benchmarks.efficiency.systems import query_texts
    from cart_pipeline.core.decoder import TrainConfig, train_decoder
    from cart_pipeline.core.encoders.text import MiniLMTextEncoder

    model, tokens = _decoder(work)
    rng = np.random.default_rng(args.seed)
    items = rng.choice(len(tokens), size=min(args.train_pairs, len(tokens)), replace=False)
    texts = query_texts(len(items), args.seed)  # arbitrary text per sampled item
    config = TrainConfig(epochs=1, batch_size=128, progress=True, seed=args.seed)
    started = time.perf_counter()
    train_decoder(model, texts, items, tokens, MiniLMTextEncoder(), config)
    torch.save(model.state_dict(), work / "decoder.pt")
    return {"pairs": len(items), "epoch_s_incl_text_cache": time.perf_counter() - started}


def stage_search(work: Path, args) -> dict:
    import torch

    from benchmarks.efficiency.systems import query_texts
    from cart_pipeline.core.decoder import IdentifierTrie
    from cart_pipeline.core.encoders.text import MiniLMTextEncoder
    from cart_pipeline.core.retrieval.cart import CartIndex

    torch.set_num_threads(1)
    model, tokens = _decoder(work)
    model.load_state_dict(torch.load(work / "decoder.pt", weights_only=True))
    item_ids = np.arange(len(tokens)).astype(str)
    trie = IdentifierTrie.from_tokens(tokens)
    index = CartIndex(model.eval(), trie, item_ids, MiniLMTextEncoder())
    texts = query_texts(args.queries, args.seed + 1)
    _, _, timing = index.search(texts, top_k=10, beam_size=10, batch_size=100)
    return {
        "queries": len(texts),
        "qps_search": len(texts) / timing["decode_s"],
        "qps_with_encoding": len(texts) / (timing["decode_s"] + timing["encode_s"]),
    }


def run_stage(name: str, work: Path, args) -> dict:
    """One stage in its own process: wall seconds, its peak RSS, what it reports."""
    command = [sys.executable, "-m", "benchmarks.scale_rehearsal", "--stage", name]
    command += ["--work", str(work), *(f"--{k.replace('_', '-')}={v}" for k, v in _shared(args))]
    started = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage {name} failed")
    report = json.loads((work / f"{name}.json").read_text())
    row = {"stage": name, "wall_s": seconds, "peak_rss_gb": usage.ru_maxrss / 2**20, **report}
    log.info("%s", row)
    return row


def _shared(args) -> list[tuple[str, object]]:
    """The settings a stage process needs from the parent's arguments."""
    names = ("items", "sample", "rqvae_epochs", "train_pairs", "queries", "seed")
    return [(name, getattr(args, name)) for name in names]


def feature_stage(n_items: int, workers: int) -> list[dict]:
    """The real feature extraction of the shipped images repeated to ``n_items``: one process,
    then ``workers`` Dask workers in shards; wall seconds and items/s of each."""
    from kedro.config import OmegaConfigLoader

    from cart_pipeline.pipelines.feature_extraction.nodes import extract_candidate_features
    from cart_pipeline.settings import CONFIG_LOADER_ARGS

    params = OmegaConfigLoader(str(PROJECT / "conf"), **CONFIG_LOADER_ARGS)["parameters"]
    manifest = pd.read_csv(DEFAULT_DATASET / "manifest.csv", dtype=str, keep_default_na=False)
    images = manifest[manifest.modality == "image"].media_path.to_numpy()
    paths = np.resize(images, n_items)
    candidates = pd.DataFrame(
        {"item_id": [f"i{j:07d}" for j in range(n_items)], "media_path": paths, "modality": "image"}
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, sharding in (
            ("one process (2 decode threads)", {"shard_size": None}),
            (f"Dask, {workers} workers", {"shard_size": 500, "n_workers": workers,
                                          "scheduler": None, "folder": folder}),
        ):  # fmt: skip
            stage_params = {**params["feature_extraction"], "sharding": sharding}
            started = time.perf_counter()
            table, _ = extract_candidate_features(
                candidates, stage_params, "image", str(DEFAULT_DATASET), "cpu"
            )
            seconds = time.perf_counter() - started
            rows.append({"stage": f"features: {label}", "items": len(table), "wall_s": seconds,
                         "items_per_s": len(table) / seconds})  # fmt: skip
            log.info("%s", rows[-1])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=100_000, help="RQ-VAE training items")
    parser.add_argument("--rqvae-epochs", type=int, default=5)
    parser.add_argument("--train-pairs", type=int, default=20_000, help="decoder epoch size")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--feature-items", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.stage:  # a child: run one stage, report to the parent through a file
        report = globals()[f"stage_{args.stage}"](args.work, args)
        (args.work / f"{args.stage}.json").write_text(json.dumps(report))
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cart-scale-") as work:
        rows = [run_stage(stage, Path(work), args) for stage in STAGES]
    rows += feature_stage(args.feature_items, 2)
    table = pd.DataFrame(rows)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out_dir / "scale_rehearsal.csv", index=False)
    meta = {
        "command": "python -m benchmarks.scale_rehearsal " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "args": {k: str(v) for k, v in vars(args).items()},
        "runtime_s": time.perf_counter() - started,
    }
    (args.out_dir / "scale_rehearsal.json").write_text(json.dumps(meta, indent=2))
    print(markdown_table(table))  # noqa: T201


if __name__ == "__main__":
    main()
