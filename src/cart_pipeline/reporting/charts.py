"""The charts of the pipeline: the one recall chart (grouped bars per system, one panel per
modality and overall) and the identifier prefix map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def recall_chart(
    panels: Mapping[str, Mapping[str, Mapping[str, Any]]],
    metrics: Sequence[str] = ("R@1", "R@5", "R@10"),
    title: str = "",
) -> plt.Figure:
    """``panels[group][system]`` holds a system's metrics (``R@1``..., ``n_queries`` and, where
    known, ``<metric>_ci95`` drawn as whiskers); one panel per group, one bar colour per system."""
    systems = list(dict.fromkeys(s for table in panels.values() for s in table))
    width = 0.8 / max(len(systems), 1)
    # constrained layout gives the suptitle its own row (tight_layout let it cover a title)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.5 * len(panels), 3.9),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    x = np.arange(len(metrics))
    for ax, (group, table) in zip(axes[0], panels.items(), strict=True):
        for i, system in enumerate(systems):
            if system not in table:
                continue
            values = np.array([table[system][m] for m in metrics], dtype=float)
            errors = None
            if all(f"{m}_ci95" in table[system] for m in metrics):
                ci = np.array(
                    [table[system][f"{m}_ci95"] for m in metrics], dtype=float
                ).T  # (2, M)
                errors = np.clip(np.abs(ci - values), 0, None)
            offset = (i - (len(systems) - 1) / 2) * width
            bars = ax.bar(
                x + offset,
                values,
                width=width,
                yerr=errors,
                capsize=2,
                color=f"C{i % 10}",
                label=system.replace("_", " "),
            )
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=2)
        ax.set_xticks(x, list(metrics))
        n = next(iter(table.values()), {}).get("n_queries")
        ax.set_title(f"{group} (n={n})" if n is not None else group)
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("recall (strict), 95 % CI where shown")
    axes[0][-1].legend(loc="upper left", fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def identifier_prefix_map(
    features: np.ndarray,
    coarse: np.ndarray,
    fine: np.ndarray,
    title: str,
    perplexity: float = 30.0,
    outlined: int = 4,
    seed: int = 0,
) -> plt.Figure:
    """t-SNE of (N, D) item features coloured by coarse token (N,); in the `outlined` largest
    coarse clusters, the items sharing its most common first fine token (fine: (N, M)) are
    outlined, to show whether identifier prefixes are neighbourhoods."""
    from scipy.spatial import ConvexHull
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    reduced = PCA(n_components=min(50, *features.shape), random_state=seed).fit_transform(features)
    perplexity = min(perplexity, (len(features) - 1) / 3)
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        reduced
    )

    fig, ax = plt.subplots(figsize=(8, 7))
    ax.scatter(xy[:, 0], xy[:, 1], c=coarse % 20, cmap="tab20", s=10, alpha=0.8, linewidths=0)
    if fine.shape[1]:
        for k in np.argsort(-np.bincount(coarse))[:outlined]:
            in_k = coarse == k
            first_fine = np.bincount(fine[in_k, 0]).argmax()
            members = xy[in_k & (fine[:, 0] == first_fine)]
            if len(members) >= 3:
                hull = ConvexHull(members)
                ring = np.append(hull.vertices, hull.vertices[0])
                ax.plot(members[ring, 0], members[ring, 1], "k-", lw=1)
                ax.annotate(f"c{k}-f{first_fine}", members.mean(0), fontsize=8, weight="bold")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig
