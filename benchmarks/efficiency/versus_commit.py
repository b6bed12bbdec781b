"""CART search speed of this tree against an older commit's, side by side on one machine.

    python -m benchmarks.efficiency.versus_commit --base a6dc3b7          # 1M identifiers
    python -m benchmarks.efficiency.versus_commit --base a6dc3b7 --n 100000 --rounds 3

Absolute q/s moves by 20 % and more between machines and between runs on this shared one, so
a speed-up claimed against a number measured earlier (issue #16's 43-47 q/s at 1M) is only
meaningful as a ratio measured in the same run. This builds one synthetic corpus's
identifiers with this tree's pipeline code (`systems.build_identifiers`, as
`benchmarks.efficiency` does), exports `--base`'s `src/` with `git archive`, and starts one
`decode_worker.py` process per system: the base commit's float32 index, this tree's float32
index and this tree's int8 index, each with the same identifiers, the same seeded untrained
default-size decoder and the same 100 query texts. Every round times one batch of every
worker in a fresh shuffled order, so machine load hits each alike.

Writes results/versus_commit.{csv,json}: q/s search-only and with encoding per system
(median over rounds), and per-round ratios to the base.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.efficiency import systems
from benchmarks.efficiency.harness import ROOT, LoadMeter, code_version
from cart_pipeline.core.tables import int_lists_to_matrix
from experiments.runs import markdown_table

log = logging.getLogger("benchmarks.efficiency")
RESULTS = Path(__file__).resolve().parents[1] / "results"
WORKER = Path(__file__).with_name("decode_worker.py")


def export_src(commit: str, into: Path) -> Path:
    """`src/` of ``commit`` under ``into`` (no checkout, no worktree bookkeeping)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "src"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


class Worker:
    """A `decode_worker.py` process over one version of the code."""

    def __init__(self, name: str, src: Path, spec: Path, int8: bool):
        self.name, self.samples = name, []
        env = {**os.environ, "PYTHONPATH": str(src)}
        cmd = [sys.executable, str(WORKER), str(spec), *(["--int8"] if int8 else [])]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)  # fmt: skip
        self.module = json.loads(self._read("READY"))["module"]
        log.info("%s ready (%s)", name, self.module)

    def _read(self, tag: str) -> str:
        for line in self.proc.stdout:
            if line.startswith(tag + " "):
                return line[len(tag) + 1 :]
        raise RuntimeError(f"worker {self.name} ended (exit {self.proc.wait()})")

    def time_batch(self) -> dict:
        self.proc.stdin.write("time\n")
        self.proc.stdin.flush()
        return json.loads(self._read("RESULT"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--base", required=True, help="the commit to compare against")
    ap.add_argument("--n", type=int, default=1_000_000, help="identifiers (corpus size)")
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--queries", type=int, default=100, help="queries per batch")
    ap.add_argument("--threads", type=int, default=1, help="query-time threads per worker")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modes", type=int, default=4096)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--rqvae-epochs", type=int, default=5)
    ap.add_argument("--rqvae-train-max", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    base = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    started, load_at_start = time.perf_counter(), os.getloadavg()[0]

    x = systems.make_vectors(args.n, args.modes, args.sigma, args.seed, stream=0)
    frame, vocab, _, stats = systems.build_identifiers(
        x, args.seed, args.rqvae_epochs, args.rqvae_train_max
    )
    del x
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "tokens.npy", int_lists_to_matrix(frame["tokens"]))
        spec = tmp / "spec.json"
        spec.write_text(json.dumps({
            "tokens": str(tmp / "tokens.npy"),
            "vocab_size": vocab.size,
            "position_ranges": vocab.position_ranges(),
            "texts": systems.query_texts(args.queries, args.seed),
            "beam": args.beam,
            "seed": args.seed,
            "threads": args.threads,
        }))  # fmt: skip
        base_src = export_src(base, tmp / "base")
        this_src = ROOT / "src"
        workers = []
        try:
            for name, src, int8 in (
                (f"{base} float32", base_src, False),
                ("this tree float32", this_src, False),
                ("this tree int8", this_src, True),
            ):
                workers.append(Worker(name, src, spec, int8))
            rng = np.random.default_rng(args.seed)
            for round_ in range(1, args.rounds + 1):
                for i in rng.permutation(len(workers)):
                    with LoadMeter() as meter:
                        sample = workers[i].time_batch()
                    # the meter counts the worker as another process: take its CPU out
                    others = meter.others_cores - sample["cpu_s"] / meter.wall_s
                    workers[i].samples.append({**sample, "others_cores": max(others, 0.0)})
                log.info("round %d of %d done", round_, args.rounds)
        finally:
            for w in workers:
                w.close()

    base_worker, rows = workers[0], []
    for w in workers:
        decode = np.array([s["decode_s"] for s in w.samples])
        encode = np.array([s["encode_s"] for s in w.samples])
        ratio = np.array([b["decode_s"] for b in base_worker.samples]) / decode
        rows.append({
            "system": w.name,
            "n": args.n,
            "beam": args.beam,
            "threads": args.threads,
            "rounds": len(decode),
            "qps_search": args.queries / np.median(decode),
            "qps_with_encoding": args.queries / np.median(decode + encode),
            "speedup_vs_base_median": float(np.median(ratio)),
            "speedup_vs_base_min": float(ratio.min()),
            "speedup_vs_base_max": float(ratio.max()),
            "others_cores_max": max(s["others_cores"] for s in w.samples),
            "module": w.module,
        })  # fmt: skip
        log.info("%-20s %7.1f q/s search, %.2fx the base (rounds %.2f-%.2f)", w.name,
                 rows[-1]["qps_search"], rows[-1]["speedup_vs_base_median"], ratio.min(),
                 ratio.max())  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(args.out_dir / "versus_commit.csv", index=False)
    meta = {
        "command": "python -m benchmarks.efficiency.versus_commit " + " ".join(sys.argv[1:]),
        "base": base,
        "identifiers": stats,
        "load": f"1-min load average {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end",
        "runtime_s": time.perf_counter() - started,
        "code": code_version(),
    }
    (args.out_dir / "versus_commit.json").write_text(json.dumps(meta, indent=2))
    print(markdown_table(table.drop(columns="module"), digits=2))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
