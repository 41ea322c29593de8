"""The paper's figures as pure functions: a table from :mod:`wmprobe.study.analysis` in, a Figure
out.

Nothing here reads or writes files or touches pyplot's global state: each function builds a
``matplotlib.figure.Figure`` on the Agg backend, so it works headless and in threads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from wmprobe.errors import InvalidArgumentError

THRESHOLD_COLORS = ("#c6dbef", "#6baed6", "#2171b5", "#08306b")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _ordered(values: pd.Series) -> list:
    return list(dict.fromkeys(values.tolist()))


def _check(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InvalidArgumentError(
            f"Expected argument `{name}` to have the column(s) {', '.join(missing)} "
            f"but got {', '.join(map(str, table.columns))}"
        )
    if table.empty:
        raise InvalidArgumentError(f"Expected argument `{name}` to have rows but it is empty")


def class_auc_figure(ranking: pd.DataFrame, scenario: str) -> Figure:
    """Figures 2, 6, 7 of the paper: one scenario's top and bottom classes by mean AUC.

    A bar per class for the mean over models and one dot per model; horizontal lines show the
    model's interval where ``ci_low``/``ci_high`` are present. ``ranking`` is
    :func:`wmprobe.study.analysis.class_ranking`'s output.
    """
    _check(
        ranking, ("scenario", "side", "rank", "class_name", "mean_auc", "model", "auc"), "ranking"
    )
    rows = ranking[ranking["scenario"] == scenario]
    if rows.empty:
        raise InvalidArgumentError(
            f"Expected argument `scenario` to be in the ranking but got {scenario!r}"
        )
    models = _ordered(rows["model"])
    colors = dict(zip(models, _palette(len(models)), strict=True))
    sides = [s for s in ("top", "bottom") if (rows["side"] == s).any()]
    k = int(rows["rank"].max())
    fig = _figure(11, 0.32 * k + 1.6)
    axes = fig.subplots(1, len(sides), squeeze=False)[0]
    has_ci = {"ci_low", "ci_high"} <= set(rows.columns)
    for ax, side in zip(axes, sides, strict=True):
        part = rows[rows["side"] == side]
        classes = part.drop_duplicates("rank").sort_values("rank")
        y = np.arange(len(classes))[::-1]
        ypos = dict(zip(classes["rank"], y, strict=True))
        ax.barh(y, classes["mean_auc"], color="#dddddd", edgecolor="#999999", label="mean")
        offsets = np.linspace(-0.25, 0.25, len(models)) if len(models) > 1 else [0.0]
        for offset, model in zip(offsets, models, strict=True):
            m = part[part["model"] == model]
            ys = m["rank"].map(ypos).to_numpy() + offset
            ax.scatter(m["auc"], ys, s=18, color=colors[model], label=model, zorder=3)
            if has_ci:
                ax.hlines(ys, m["ci_low"], m["ci_high"], color=colors[model], lw=1, zorder=2)
        labels = [f"{n} ({u})" for n, u in zip(classes["class_name"], classes["unit"], strict=True)]
        ax.set_yticks(y, labels)
        ax.axvline(0.5, color="black", lw=0.8, ls=":")
        ax.set_xlim(0, 1)
        ax.set_xlabel("AUC (clean 0 vs watermarked 1)")
        ax.set_title(f"{'highest' if side == 'top' else 'lowest'} mean AUC")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(6, len(labels)), fontsize=8)
    fig.suptitle(f"Logit classes most raised and lowered by {scenario} text")
    return fig


def sensitive_units_figure(
    counts: pd.DataFrame, layer: str = "logits", value: str = "count"
) -> Figure:
    """Figure 3 of the paper: per model, units of ``layer`` with d above each threshold.

    ``value`` is ``count`` (Figure 3 left, logits) or ``share`` (Figure 3 right, feature units, in
    percent). One panel per scenario, one bar group per model, one bar per threshold; with few
    models each bar carries its number.
    """
    if value not in ("count", "share"):
        raise InvalidArgumentError(
            f"Expected argument `value` to be 'count' or 'share' but got {value!r}"
        )
    _check(counts, ("model", "scenario", "layer", "threshold", value), "counts")
    rows = counts[counts["layer"] == layer]
    if rows.empty:
        raise InvalidArgumentError(
            f"Expected argument `layer` to be in the counts but got {layer!r}"
        )
    scenarios = _ordered(rows["scenario"])
    models = _ordered(rows["model"])
    thresholds = sorted(rows["threshold"].unique())
    ncols = 2 if len(models) <= 8 and len(scenarios) > 1 else 1
    nrows = -(-len(scenarios) // ncols)
    panel_width = max(5.0, 0.55 * len(models) * len(thresholds) / 2 + 1.5)
    fig = _figure(min(16.0, panel_width * ncols), 2.6 * nrows + 1.0)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    width = 0.8 / len(thresholds)
    x = np.arange(len(models))
    scale = 100.0 if value == "share" else 1.0
    top = float(scale * rows[value].max())
    label = len(models) * len(thresholds) <= 24
    for ax in axes[len(scenarios) :]:
        ax.axis("off")
    for ax, scenario in zip(axes, scenarios, strict=False):
        part = rows[rows["scenario"] == scenario]
        for i, t in enumerate(thresholds):
            vals = part[part["threshold"] == t].set_index("model").reindex(models)[value]
            color = THRESHOLD_COLORS[i % len(THRESHOLD_COLORS)]
            bars = ax.bar(
                x + (i - (len(thresholds) - 1) / 2) * width,
                scale * vals.to_numpy(dtype=float),
                width,
                color=color,
                label=f"d > {t:g}",
            )
            if label:
                fmt = "{:.1f}" if value == "share" else "{:.0f}"
                ax.bar_label(bars, labels=[fmt.format(scale * v) for v in vals], fontsize=6)
        ax.set_ylim(0, max(1.0, top) * 1.15)
        ax.set_ylabel("% of units" if value == "share" else "units")
        ax.set_title(scenario, fontsize=10, loc="left")
        ax.set_xticks(x, models, rotation=30, ha="right", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(thresholds), fontsize=8)
    what = "logit units" if layer == "logits" else f"units of the {layer} layer"
    kind = "share of" if value == "share" else "number of"
    fig.suptitle(f"{kind.capitalize()} {what} with differentiability above each threshold")
    return fig


def accuracy_figure(accuracy: pd.DataFrame) -> Figure:
    """Top-1 accuracy per model on clean images and on each probe set (grouped bars)."""
    _check(accuracy, ("model", "variant", "top1"), "accuracy")
    models = _ordered(accuracy["model"])
    variants = _ordered(accuracy["variant"])
    colors = ["#444444", *_palette(max(1, len(variants) - 1))]
    fig = _figure(max(7.0, 1.1 * len(models) + 2), 3.6)
    ax = fig.subplots()
    width = 0.8 / len(variants)
    x = np.arange(len(models))
    for i, variant in enumerate(variants):
        vals = accuracy[accuracy["variant"] == variant].set_index("model").reindex(models)["top1"]
        ax.bar(
            x + (i - (len(variants) - 1) / 2) * width,
            100 * vals,
            width,
            color=colors[i % len(colors)],
            label=variant,
        )
    ax.set_xticks(x, models, rotation=30, ha="right")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(ncol=len(variants), fontsize=8, loc="lower right")
    fig.suptitle("Top-1 accuracy on clean and watermarked images")
    return fig


def depth_profile_figure(profile: pd.DataFrame, threshold: float = 0.9) -> Figure:
    """Share of block-layer units with d above ``threshold``, by layer in table order.

    One panel per scenario, one line per model; x is each layer's position in its model.
    """
    _check(profile, ("model", "scenario", "position", "layer", "share"), "profile")
    scenarios = _ordered(profile["scenario"])
    models = _ordered(profile["model"])
    colors = dict(zip(models, _palette(len(models)), strict=True))
    fig = _figure(9, 2.4 * len(scenarios) + 0.6)
    axes = fig.subplots(len(scenarios), 1, squeeze=False, sharex=True)[:, 0]
    for ax, scenario in zip(axes, scenarios, strict=True):
        part = profile[profile["scenario"] == scenario]
        for model in models:
            m = part[part["model"] == model].sort_values("position")
            ax.plot(
                m["position"], 100 * m["share"], marker="o", ms=3, color=colors[model], label=model
            )
        ax.set_ylabel(f"% units d > {threshold:g}")
        ax.set_title(scenario, fontsize=10, loc="left")
    if len(models) == 1:
        m = profile[profile["model"] == models[0]].drop_duplicates("position")
        m = m.sort_values("position")
        axes[-1].set_xticks(m["position"], m["layer"], rotation=30, ha="right", fontsize=7)
    else:
        axes[-1].set_xlabel("layer position (input -> output)")
    axes[0].legend(fontsize=7, ncol=min(4, len(models)))
    fig.suptitle("Where in the network units tell watermarked from clean images")
    return fig


def image_grid_figure(
    rows: Sequence[Sequence[Image.Image]],
    captions: Sequence[Sequence[str]],
    *,
    row_titles: Sequence[str] = (),
    title: str = "",
    cell: int = 160,
) -> Figure:
    """A contact sheet: a grid of images (each ``cell`` px square) with captions and row titles.

    The images are laid into one mosaic shown on a single axes at 100 dpi (one figure pixel per
    mosaic pixel), which keeps sheets of many images quick to draw.
    """
    if not rows or not any(rows):
        raise InvalidArgumentError(
            "Expected argument `rows` to hold at least one image but got none"
        )
    if len(captions) != len(rows) or any(
        len(c) != len(r) for c, r in zip(captions, rows, strict=True)
    ):
        raise InvalidArgumentError("Expected argument `captions` to have the shape of `rows`")
    if cell < 16:
        raise InvalidArgumentError(f"Expected argument `cell` to be >= 16 but got {cell}")
    pad, caption_h = 4, 16
    label_w = 120 if any(row_titles) else 0
    title_h = 26 if title else 0
    ncols = max(len(r) for r in rows)
    width = label_w + ncols * (cell + pad) + pad
    height = title_h + len(rows) * (cell + caption_h + pad) + pad
    mosaic = np.full((height, width, 3), 255, dtype=np.uint8)
    places = []
    for r, images in enumerate(rows):
        top = title_h + pad + r * (cell + caption_h + pad)
        for c, image in enumerate(images):
            left = label_w + pad + c * (cell + pad)
            small = image.convert("RGB").resize((cell, cell), Image.Resampling.BILINEAR)
            mosaic[top : top + cell, left : left + cell] = np.asarray(small)
            places.append((left + cell / 2, top + cell + 2, captions[r][c]))
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(fig)
    fig.figimage(mosaic, xo=0, yo=0, origin="upper")  # pixels as they are, no resampling

    def put(x: float, y: float, text: str, **kw) -> None:  # mosaic pixels, y down
        fig.text(x / width, 1 - y / height, text, **kw)

    for x, y, text in places:
        put(x, y, text, fontsize=7, ha="center", va="top")
    for r, text in enumerate(row_titles[: len(rows)]):
        top = title_h + pad + r * (cell + caption_h + pad)
        put(pad, top + cell / 2, text, fontsize=7, ha="left", va="center")
    if title:
        put(width / 2, 6, title, fontsize=10, ha="center", va="top")
    return fig
