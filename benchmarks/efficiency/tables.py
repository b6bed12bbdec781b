"""Tables and plot of the efficiency benchmark, rebuilt from its CSVs without re-measuring.

    python -m benchmarks.efficiency.tables [--results benchmarks/results]

Reads efficiency.csv, efficiency_build.csv, efficiency.json (and beam_curve.csv from
`benchmarks.efficiency.trained` where present); writes efficiency.md and efficiency.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parents[1] / "results"
TARGET_QPS = 190  # issue #16: CART beam 10, 1 thread, 1M identifiers, search only


def fmt_n(n: int) -> str:
    return (
        f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}K" if n % 1000 == 0 else str(n)
    )


def label(row) -> str:
    return f"{row['system']} {row['params']}"


def throughput_table(df: pd.DataFrame, threads: int) -> list[str]:
    sizes = sorted(df["n"].unique())
    big = sizes[-1]
    sub = df[df["threads"] == threads]
    head = (
        "| system | "
        + " | ".join(f"q/s search @ {fmt_n(n)}" for n in sizes)
        + f" | q/s with encoding @ {fmt_n(big)} | search p50 / p99 ms @ {fmt_n(big)}"
        + f" | recall@10 vs exact @ {fmt_n(big)} | index MB @ {fmt_n(big)} | build s @ {fmt_n(big)} |"
    )
    lines = [head, "|---" * (len(sizes) + 6) + "|"]
    for name, g in sub.groupby(sub.apply(label, axis=1), sort=False):
        g = g.set_index("n")
        cells = [f"{g.loc[n, 'qps_search']:.1f}" if n in g.index else "–" for n in sizes]
        if big in g.index:
            r = g.loc[big]
            recall = "–" if pd.isna(r["recall10_vs_exact"]) else f"{r['recall10_vs_exact']:.3f}"
            tail = [
                f"{r['qps_with_encoding']:.1f}",
                f"{r['search_p50_ms']:.0f} / {r['search_p99_ms']:.0f}",
                recall,
                f"{r['index_bytes'] / 2**20:.0f}",
                f"{r['build_s']:.0f}",
            ]
        else:
            tail = ["–"] * 5
        lines.append(f"| {name} | " + " | ".join(cells + tail) + " |")
    return lines


def ratios(df: pd.DataFrame) -> dict[str, float]:
    """Side-by-side ratios at the largest N, one thread (same rounds, same load)."""
    big = df["n"].max()
    one = df[(df["threads"] == df["threads"].min()) & (df["n"] == big)].copy()
    one.index = one.apply(label, axis=1)
    out = {}
    cart = one.loc["CART beam=10"] if "CART beam=10" in one.index else None
    if cart is None:
        return out
    for other in one.index:
        if not other.startswith("CART"):
            out[f"CART beam=10 / {other}, q/s search"] = (
                cart.qps_search / one.loc[other, "qps_search"]
            )
            out[f"CART beam=10 / {other}, q/s with encoding"] = (
                cart.qps_with_encoding / one.loc[other, "qps_with_encoding"]
            )
    return out


def build_table(build: pd.DataFrame) -> list[str]:
    lines = [
        "| N | CART k-means (k) | RQ-VAE | IDs + trie | CART total | FAISS flat | HNSW | IVF-PQ |"
        " CART MB (int8) | vectors MB | HNSW MB | IVF-PQ MB | peak RSS GB |",
        "|---" * 13 + "|",
    ]
    for _, r in build.iterrows():
        lines.append(
            f"| {fmt_n(int(r['n']))} | {r['cart_kmeans_s']:.1f} ({int(r['cart_n_clusters'])}) "
            f"| {r['cart_rqvae_s']:.1f} | {r['cart_ids_and_trie_s']:.1f} | {r['cart_build_s']:.0f} "
            f"| {r['flat_build_s']:.1f} | {_cell(r, 'hnsw_build_s')} | {r['ivfpq_build_s']:.0f} "
            f"| {_mb(r, 'cart_bytes')} ({_mb(r, 'cart_int8_bytes')}) | {_mb(r, 'vectors_bytes')} "
            f"| {_mb(r, 'hnsw_bytes')} | {_mb(r, 'ivfpq_bytes')} | {r['peak_rss_gb']:.1f} |"
        )
    return lines


def _cell(row: pd.Series, key: str, scale: float = 1.0) -> str:
    """A number rounded to units, or "–" for a system this run skipped (--skip-hnsw)."""
    return f"{row[key] / scale:.0f}" if key in row and pd.notna(row[key]) else "–"


def _mb(row: pd.Series, key: str) -> str:
    return _cell(row, key, 2**20)


def beam_curve_table(curve: pd.DataFrame) -> list[str]:
    lines = [
        "| decoder | beam | R@1 [95 % CI] | R@10 [95 % CI] | q/s search | q/s with encoding |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in curve.iterrows():
        lines.append(
            f"| {r['decoder']} | {int(r['beam'])} | {r['R@1']:.3f} [{r['R@1_lo']:.3f}, "
            f"{r['R@1_hi']:.3f}] | {r['R@10']:.3f} [{r['R@10_lo']:.3f}, {r['R@10_hi']:.3f}] "
            f"| {r['qps_search']:.1f} | {r['qps_with_encoding']:.1f} |"
        )
    return lines


def write_plot(df: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one = df[df["threads"] == df["threads"].min()]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for ax, column, name in zip(
        axes,
        ("qps_search", "qps_with_encoding"),
        ("search only", "with query encoding"),
        strict=True,
    ):
        for key, g in one.groupby(one.apply(label, axis=1), sort=False):
            g = g.sort_values("n")
            style = "-o" if key.startswith("CART") else "--s"
            ax.plot(g["n"], g[column], style, label=key, linewidth=1.2, markersize=4)
        ax.set(xscale="log", yscale="log", xlabel="candidates N", title=name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"queries/s (batch of {int(one['batch'].iloc[0])}, top-10)")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_all(results: Path = RESULTS) -> str:
    df = pd.read_csv(results / "efficiency.csv")
    build = pd.read_csv(results / "efficiency_build.csv")
    meta = json.loads((results / "efficiency.json").read_text())
    lines = [f"Machine: {meta['machine']}. Load: {meta['load']}.", ""]
    for threads in sorted(df["threads"].unique()):
        lines += [f"**Throughput, {threads} thread(s)**", "", *throughput_table(df, threads), ""]
    found = ratios(df)
    if found:
        lines += ["**Ratios at the largest N, measured in the same rounds**", ""]
        lines += [f"- {k}: {v:.2f}" for k, v in found.items()]
        big = df[(df["n"] == df["n"].max()) & (df["threads"] == 1)]
        best = big[big["system"].str.startswith("CART") & (big["params"] == "beam=10")]
        for _, r in best.iterrows():
            verdict = "met" if r["qps_search"] >= TARGET_QPS else "not met"
            lines.append(
                f"- target ≥ {TARGET_QPS} q/s search, {r['system']} beam 10, 1 thread, "
                f"N={fmt_n(int(r['n']))}: {r['qps_search']:.0f} ({verdict})"
            )
        lines.append("")
    lines += ["**Index build (s) and memory**", "", *build_table(build), ""]
    curve_path = results / "beam_curve.csv"
    if curve_path.exists():
        curve = pd.read_csv(curve_path)
        lines += [
            f"**Beam size on the default set** ({curve['note'].iloc[0]})",
            "",
            *beam_curve_table(curve),
            "",
        ]
    lines.append("Code measured: " + ", ".join(f"{k} {v}" for k, v in meta["code"].items()))
    text = "\n".join(lines) + "\n"
    (results / "efficiency.md").write_text(text)
    write_plot(df, results / "efficiency.png", f"{meta['machine']}\n{meta['load']}")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS)
    print(write_all(parser.parse_args(argv).results))  # noqa: T201


if __name__ == "__main__":
    main()
