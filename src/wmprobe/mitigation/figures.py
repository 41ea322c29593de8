"""Figures of a sweep (the paper's Figure 4 analogs): pure functions returning a Figure.

:func:`save_figure` writes a figure as PNG and SVG beside a CSV of the numbers it shows.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from wmprobe.mitigation.sweep import RANDOM, SENSITIVE  # noqa: E402


def _fraction_labels(fractions) -> list[str]:
    return [f"{100 * f:g}%" for f in fractions]


def fraction_curves(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Accuracy and the largest output-unit d against the fraction of units left out.

    ``table`` is ``SweepResult.table()``: the most sensitive units left out (solid), and where
    present the random baseline (dashed); bands are +-1 sd over seeds (sensitive) or over seeds
    and draws (random) where there are several runs. The
    fractions are evenly spaced on the x axis.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    x = np.arange(len(table))
    panels = (("accuracy", "held-out accuracy"), ("max_d", "largest d of an output unit"))
    for ax, (metric, label) in zip(axes, panels, strict=True):
        for prefix, name, style in (
            ("", "most sensitive left out", "-"),
            ("random_", "random", "--"),
        ):
            col = prefix + metric
            if col not in table:
                continue
            y = table[col].to_numpy(dtype=float)
            (line,) = ax.plot(x, y, style, marker="o", label=name)
            sd = table.get(col + "_sd")
            if sd is not None and np.isfinite(sd.to_numpy(dtype=float)).any():
                s = np.nan_to_num(sd.to_numpy(dtype=float))
                ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.2, lw=0)
        if metric == "max_d":
            ax.axhline(0.7, color="grey", lw=0.8, ls=":", label="d = 0.7")
        ax.set_xticks(x, _fraction_labels(table["fraction"]), rotation=45)
        ax.set_xlabel("feature units left out")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def auc_distribution(
    units: pd.DataFrame, *, scenario: str | None = None, title: str = ""
) -> Figure:
    """Box plots of the output units' AUC per fraction: sensitive units left out next to random.

    ``units`` is ``SweepResult.units``; all seeds (and random draws) are pooled. ``scenario``
    picks one scenario (default: the first).
    """
    scenario = scenario or str(units["scenario"].iloc[0])
    u = units[units["scenario"] == scenario]
    fractions = sorted(u["fraction"].unique())
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(fractions) + 2), 4), constrained_layout=True)
    x = np.arange(len(fractions))
    rankings = [r for r in (SENSITIVE, RANDOM) if (u["ranking"] == r).any()]
    width = 0.8 / len(rankings)
    for i, ranking in enumerate(rankings):
        data = [
            u[(u["ranking"] == ranking) & (u["fraction"] == f)]["auc"].to_numpy() for f in fractions
        ]
        pos = x + (i - (len(rankings) - 1) / 2) * width
        parts = ax.boxplot(
            data, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=True
        )
        for box in parts["boxes"]:
            box.set_facecolor(f"C{i}")
            box.set_alpha(0.5)
        ax.plot([], [], color=f"C{i}", lw=6, alpha=0.5, label=f"{ranking} units left out")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xticks(x, _fraction_labels(fractions), rotation=45)
    ax.set_xlabel("feature units left out")
    ax.set_ylabel(f"AUC of output units ({scenario})")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower left", ncols=len(rankings), fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def auc_distribution_data(units: pd.DataFrame, scenario: str | None = None) -> pd.DataFrame:
    """The numbers behind :func:`auc_distribution`: quartiles and extremes per ranking/fraction."""
    scenario = scenario or str(units["scenario"].iloc[0])
    u = units[units["scenario"] == scenario]
    q = u.groupby(["ranking", "fraction"])["auc"].describe()
    return q.reset_index().assign(scenario=scenario)


def save_figure(fig: Figure, data: pd.DataFrame, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png``, ``stem.svg`` and ``stem.csv`` (the numbers) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.svg", out / f"{stem}.csv"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    data.to_csv(paths[2], index=False)
    return paths
