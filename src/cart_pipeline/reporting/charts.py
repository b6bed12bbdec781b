"""The one recall chart: grouped bars per system, one panel per modality (and overall)."""

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
