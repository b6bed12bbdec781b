"""Timing harness: thread settings, load metering, interleaved rounds, peak memory.

Nothing here knows about CART or FAISS: an :class:`Entry` is a name plus a function that
answers one batch of queries and returns (encoding seconds, search seconds).
"""

from __future__ import annotations

import hashlib
import logging
import os
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("benchmarks.efficiency")

ROOT = Path(__file__).resolve().parents[2]


def set_threads(n: int) -> None:
    """torch and FAISS (OpenMP) threads together."""
    import faiss

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KB -> GB


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(t) for t in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


class LoadMeter:
    """Wall time, this process's CPU time and the other processes' CPU use (in cores)."""

    def __enter__(self) -> LoadMeter:
        self._wall, self._cpu, self._busy = (
            time.perf_counter(),
            time.process_time(),
            _machine_busy_s(),
        )
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = time.process_time() - self._cpu
        others = _machine_busy_s() - self._busy - self.cpu_s
        self.others_cores = max(others, 0.0) / max(self.wall_s, 1e-9)


def code_version() -> dict:
    """Commit and content hashes of the search code measured."""
    out = {}
    try:
        out["git_head"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    core = ROOT / "src/cart_pipeline/core"
    for rel in (
        "decoder/model.py",
        "decoder/beam_search.py",
        "decoder/trie.py",
        "retrieval/cart.py",
    ):
        out[rel] = hashlib.sha256((core / rel).read_bytes()).hexdigest()[:12]
    return out


@dataclass
class Entry:
    """One (system, setting, N) to time. ``run()`` answers one batch of queries and returns
    (seconds encoding the query texts, seconds searching)."""

    n: int
    system: str
    params: str
    run: Callable[[], tuple[float, float]]
    index_bytes: int
    build_s: float
    recall_vs_exact: float | None = None
    max_reps: int | None = None  # cap for entries that take many seconds per batch
    samples: list = field(default_factory=list)  # (encode s, search s, own CPU s, others' cores)


def measure_interleaved(
    entries: list[Entry], threads: int, batch: int, reps: int, min_reps: int, max_seconds: float
) -> list[dict]:
    """Round-robin: every round times one batch of every entry, in a fresh seeded order, so
    load from other processes (which drifts over minutes) hits every system and size alike and
    the ratios between them stay fair. ``min_reps`` rounds, then up to ``reps`` while the
    elapsed time is under ``max_seconds``. One warm-up batch per entry first."""
    set_threads(threads)
    for e in entries:
        e.samples = []
        e.run()
    rng, started = np.random.default_rng(threads), time.perf_counter()
    for round_ in range(1, reps + 1):
        for i in rng.permutation(len(entries)):
            e = entries[i]
            if e.max_reps is not None and len(e.samples) >= e.max_reps:
                continue
            with LoadMeter() as meter:
                encode_s, search_s = e.run()
            e.samples.append((encode_s, search_s, meter.cpu_s, meter.others_cores))
        elapsed = time.perf_counter() - started
        log.info("threads=%d: round %d done after %.0f s", threads, round_, elapsed)
        if round_ >= min_reps and elapsed > max_seconds:
            break
    return [_row(e, threads, batch) for e in entries]


def _row(e: Entry, threads: int, batch: int) -> dict:
    encode, search, cpu, others = (np.array(v) for v in zip(*e.samples, strict=True))
    row = {
        "n": e.n,
        "system": e.system,
        "params": e.params,
        "threads": threads,
        "batch": batch,
        "reps": len(search),
        "qps_search": batch / search.mean(),
        "qps_with_encoding": batch / (search + encode).mean(),
        "search_p50_ms": float(np.percentile(search, 50) * 1e3),
        "search_p99_ms": float(np.percentile(search, 99) * 1e3),
        "encode_mean_ms": float(encode.mean() * 1e3),
        "cpu_ms_per_batch": float(cpu.mean() * 1e3),
        "others_cores": round(float(np.median(others)), 2),
        "index_bytes": e.index_bytes,
        "build_s": e.build_s,
        "recall10_vs_exact": e.recall_vs_exact,
    }
    log.info(
        "N=%-8d %-10s %-22s t=%d  %7.1f q/s search  %7.1f q/s with encoding  others %.2f",
        e.n, e.system, e.params, threads, row["qps_search"], row["qps_with_encoding"],
        row["others_cores"],
    )  # fmt: skip
    return row


def recall_vs_exact(found: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k found, mean over queries."""
    return float(
        np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)])
    )
