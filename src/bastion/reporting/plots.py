"""Plots for the HTML report, drawn with matplotlib as small inline SVG.

matplotlib is imported inside each function (never at module import) and figures are built
with :class:`matplotlib.figure.Figure` directly rather than ``pyplot``: no backend is
selected, no global figure registry is touched, so rendering a report inside a notebook or a
GUI program leaves the user's own plotting state alone, and nothing needs closing.

Each function takes already-validated plain data and returns an ``<svg>`` element ready to
inline in HTML: the XML prolog, DOCTYPE and metadata are removed, text stays text (smaller,
searchable), and every element id is prefixed with ``key`` so several plots in one page never
share an id; ids are derived from a fixed salt, so the output is deterministic.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "calibration_svg",
    "confusion_matrix_svg",
    "group_metrics_svg",
    "histograms_svg",
]

# A restrained palette that reads well on white and in greyscale print.
_BLUE = "#2563eb"
_GREY = "#94a3b8"
_SERIES_COLOURS = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9")
_TEXT = "#1f2937"

_RC: dict[str, Any] = {
    "svg.fonttype": "none",  # keep text as <text>: a fraction of the size of glyph paths
    "font.size": 9,
    "font.family": "sans-serif",
    "axes.edgecolor": "#cbd5e1",
    "axes.labelcolor": _TEXT,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": "#475569",
    "ytick.color": "#475569",
    "legend.frameon": False,
    "figure.facecolor": "white",
}


def _plain(text: object) -> str:
    """Label text shown literally: ``$`` would start matplotlib's math mode."""
    return str(text).replace("$", r"\$")


@contextmanager
def _figure(key: str, width: float, height: float) -> Iterator[Figure]:
    import matplotlib
    from matplotlib.figure import Figure

    settings: Any = _RC | {"svg.hashsalt": f"bastion-{key}"}  # rc keys are typed as literals
    with matplotlib.rc_context(settings):
        yield Figure(figsize=(width, height), layout="constrained")


_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)


_ID = re.compile(r'\bid="([^"]+)"')
_HREF = re.compile(r'\b((?:xlink:)?href)="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")


def _to_svg(fig: Figure, key: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = _METADATA.sub("", _PROLOG.sub("", buf.getvalue(), count=1)).strip()
    # matplotlib numbers its groups figure_1, axes_1 ... in every figure; inlined side by
    # side those ids would repeat, so every id and every reference to one gets the key.
    ids = set(_ID.findall(text))
    text = _ID.sub(lambda m: f'id="{key}-{m[1]}"', text)
    text = _HREF.sub(lambda m: f'{m[1]}="#{key}-{m[2]}"' if m[2] in ids else m[0], text)
    return _URL.sub(lambda m: f"url(#{key}-{m[1]})" if m[1] in ids else m[0], text)


def confusion_matrix_svg(labels: Sequence[str], matrix: Sequence[Sequence[float]], key: str) -> str:
    """A confusion matrix heat map with the count in every cell.

    Parameters
    ----------
    labels:
        Class labels, in the matrix's row / column order.
    matrix:
        ``matrix[i][j]`` = rows of true class ``i`` predicted as ``j`` (counts or rates).
    key:
        Unique name of the plot in its page (salts the SVG ids).

    Returns
    -------
    str
        An ``<svg>`` element.

    Example::

        svg = confusion_matrix_svg(["benign", "malignant"], [[50, 3], [2, 45]], key="mv003")
    """
    n = len(labels)
    size = min(7.5, 2.6 + 0.35 * n)
    values = [[float(v) for v in row] for row in matrix]
    top = max((v for row in values for v in row), default=0.0) or 1.0
    with _figure(key, size + 0.8, size) as fig:
        ax = fig.add_subplot()
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
        ticks = list(range(n))
        names = [_plain(label) for label in labels]
        ax.set_xticks(ticks, names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
        ax.set_yticks(ticks, names)
        ax.set_xlabel("Predicted")
        ax.set_ylabel("True")
        ax.spines[:].set_visible(False)
        # Counts get their share of the true class beneath them: recall per class at a glance.
        counts = all(v == int(v) for row in values for v in row)
        if n <= 20:  # past that the numbers no longer fit their cells
            for i, row in enumerate(values):
                total = sum(row)
                for j, v in enumerate(row):
                    text = f"{v:.3g}"
                    if counts and total > 0 and n <= 8:
                        text = f"{int(v):,}\n{v / total:.0%}"
                    ax.text(
                        j,
                        i,
                        text,
                        ha="center",
                        va="center",
                        fontsize=9 if n <= 8 else 7,
                        color="white" if v > 0.6 * top else _TEXT,
                    )
        fig.colorbar(image, ax=ax, shrink=0.8)
        return _to_svg(fig, key)


def calibration_svg(bins: Sequence[Mapping[str, float]], key: str) -> str:
    """A reliability diagram above a histogram of the predicted probabilities.

    Parameters
    ----------
    bins:
        One mapping per probability bin with ``lower``, ``upper``, ``count``,
        ``mean_predicted`` and ``fraction_positive`` (the last two ``NaN`` for empty bins).
    key:
        Unique name of the plot in its page.

    Returns
    -------
    str
        An ``<svg>`` element.

    Example::

        svg = calibration_svg([{"lower": 0, "upper": 0.5, "count": 10,
                                "mean_predicted": 0.2, "fraction_positive": 0.3}], key="mv002")
    """
    filled = [b for b in bins if b["count"] > 0 and math.isfinite(b["mean_predicted"])]
    with _figure(key, 5.2, 4.6) as fig:
        grid = fig.add_gridspec(2, 1, height_ratios=(3, 1))
        ax: Axes = fig.add_subplot(grid[0])
        ax.plot(
            [0, 1], [0, 1], linestyle="--", color=_GREY, linewidth=1, label="perfectly calibrated"
        )
        ax.plot(
            [b["mean_predicted"] for b in filled],
            [b["fraction_positive"] for b in filled],
            marker="o",
            color=_BLUE,
            linewidth=1.5,
            label="model",
        )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("Fraction of positives")
        ax.legend(loc="best")
        ax.grid(alpha=0.25)
        hist: Axes = fig.add_subplot(grid[1], sharex=ax)
        hist.bar(
            [b["lower"] for b in bins],
            [b["count"] for b in bins],
            width=[b["upper"] - b["lower"] for b in bins],
            align="edge",
            color=_BLUE,
            alpha=0.35,
            edgecolor="white",
        )
        hist.set_xlabel("Mean predicted probability")
        hist.set_ylabel("Count")
        return _to_svg(fig, key)


def group_metrics_svg(
    groups: Sequence[str], series: Mapping[str, Sequence[float | None]], key: str
) -> str:
    """Grouped bars: one group of bars per sensitive group, one bar per metric.

    Parameters
    ----------
    groups:
        Group names (combinations of the sensitive features).
    series:
        Metric name -> one value per group (``None`` where undefined, drawn as no bar).
    key:
        Unique name of the plot in its page.

    Returns
    -------
    str
        An ``<svg>`` element.

    Example::

        svg = group_metrics_svg(["F", "M"], {"selection_rate": [0.4, 0.8]}, key="fa")
    """
    n, k = len(groups), max(len(series), 1)
    width = 0.8 / k
    with _figure(key, min(10.0, 3.2 + 0.55 * n * k / 2 + 0.6 * n), 3.4) as fig:
        ax = fig.add_subplot()
        for s, (name, values) in enumerate(series.items()):
            xs = [g + (s - (k - 1) / 2) * width for g in range(n)]
            ys = [math.nan if v is None else float(v) for v in values]
            ax.bar(
                xs,
                ys,
                width=width * 0.92,
                color=_SERIES_COLOURS[s % len(_SERIES_COLOURS)],
                label=_plain(name),
            )
        rotate = n > 6 or max((len(g) for g in groups), default=0) > 12
        ax.set_xticks(
            range(n),
            [_plain(g) for g in groups],
            rotation=35 if rotate else 0,
            ha="right" if rotate else "center",
        )
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("Rate")
        ax.grid(axis="y", alpha=0.25)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _to_svg(fig, key)


def histograms_svg(columns: Sequence[tuple[str, Mapping[str, Any]]], key: str) -> str:
    """Small multiples: one panel per column, three per row.

    Parameters
    ----------
    columns:
        ``(column name, panel)`` pairs. A numeric panel is ``{"edges": [...], "counts": [...]}``
        with ``len(edges) == len(counts) + 1`` and finite, strictly increasing edges (bins of
        unequal width are drawn as densities); a categorical panel is
        ``{"categories": [...], "counts": [...]}`` (most frequent first).
    key:
        Unique name of the plot in its page.

    Returns
    -------
    str
        An ``<svg>`` element.

    Example::

        svg = histograms_svg([("age", {"edges": [0, 50, 100], "counts": [3, 4]})], key="p-train")
    """
    per_row = 3
    rows = max(1, math.ceil(len(columns) / per_row))
    from matplotlib.ticker import MaxNLocator

    with _figure(key, 9.0, 2.1 * rows) as fig:
        axes = fig.subplots(rows, per_row, squeeze=False)
        for index, ax in enumerate(axes.flat):
            if index >= len(columns):
                ax.set_visible(False)
                continue
            name, panel = columns[index]
            ax.set_title(_plain(name), loc="left", fontsize=9)
            if "edges" in panel:
                edges, counts = panel["edges"], panel["counts"]
                widths = [b - a for a, b in itertools.pairwise(edges)]
                if max(widths) - min(widths) > 1e-9 * max(widths):
                    # Unequal bins (deciles) drawn by count would all look alike: draw the
                    # density instead, whose shape is the distribution's; its scale means
                    # little, so the y labels go.
                    heights = [n / w for n, w in zip(counts, widths, strict=True)]
                    ax.tick_params(axis="y", labelleft=False, left=False)
                else:
                    heights = list(counts)
                ax.stairs(heights, edges, fill=True, color=_BLUE, alpha=0.8)
                ax.xaxis.set_major_locator(MaxNLocator(5))
            else:
                cats = [_plain(c) for c in panel["categories"]][::-1]
                ax.barh(range(len(cats)), panel["counts"][::-1], color=_BLUE, alpha=0.8)
                ax.set_yticks(range(len(cats)), cats, fontsize=7)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.2)
        return _to_svg(fig, key)


def robustness_curve_svg(curve: Sequence[Mapping[str, float]], eps_unit: str, key: str) -> str:
    """Robust accuracy and attack success rate against the attack radius (ADV001).

    Parameters
    ----------
    curve:
        ``{"eps", "robust_accuracy", "attack_success_rate"}`` per radius, increasing eps.
    eps_unit:
        What eps is measured in (``std`` for tabular data, ``input units`` for tensors).
    key:
        Unique name of the plot in its page.

    Example::

        svg = robustness_curve_svg([{"eps": 0.5, "robust_accuracy": 0.8,
                                     "attack_success_rate": 0.15}], "std", key="adv")
    """
    eps = [float(p["eps"]) for p in curve]
    with _figure(key, 5.2, 3.4) as fig:
        ax: Axes = fig.add_subplot()
        ax.plot(eps, [p["robust_accuracy"] for p in curve], marker="o", color=_BLUE,
                label="robust accuracy")  # fmt: skip
        ax.plot(eps, [p["attack_success_rate"] for p in curve], marker="s", color=_GREY,
                linestyle="--", label="attack success rate")  # fmt: skip
        ax.set_xlabel(f"eps ({_plain(eps_unit)})")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.25)
        ax.legend(loc="best")
        return _to_svg(fig, key)


def feature_changes_svg(changes: Mapping[str, float], unit_note: str, key: str) -> str:
    """Mean absolute change per feature over the successful adversarial examples (tabular).

    Aggregates only: one bar per feature (the 15 largest), in the feature's own units.
    """
    top = sorted(changes.items(), key=lambda kv: -abs(kv[1]))[:15][::-1]
    with _figure(key, 6.0, 0.28 * len(top) + 1.0) as fig:
        ax: Axes = fig.add_subplot()
        ax.barh([_plain(k) for k, _ in top], [abs(v) for _, v in top], color=_BLUE)
        ax.set_xlabel(_plain(unit_note))
        ax.grid(alpha=0.25, axis="x")
        return _to_svg(fig, key)


def adversarial_images_svg(samples: Sequence[Mapping[str, Any]], key: str) -> str:
    """Originals above their adversarial versions, with labels (tensor models, 2-D inputs)."""
    shown = [s for s in samples if "original" in s and "adversarial" in s][:6]
    with _figure(key, 1.6 * max(1, len(shown)), 3.6) as fig:
        axes = fig.subplots(2, max(1, len(shown)), squeeze=False)
        for col, sample in enumerate(shown):
            for row, field in enumerate(("original", "adversarial")):
                image = _as_image(sample[field])
                ax = axes[row][col]
                ax.imshow(image, cmap="gray_r", interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                label = sample["label"] if row == 0 else sample["adversarial_label"]
                ax.set_title(f"{field[:3]}: {_plain(label)}", fontsize=8)
        return _to_svg(fig, key)


def _as_image(values: Any) -> Any:
    import numpy as np

    from bastion._numeric import looks_channels_last

    array = np.asarray(values, dtype=float)
    while array.ndim > 3 and array.shape[0] == 1:  # a batch axis of one
        array = array[0]
    if array.ndim == 3:
        # channels averaged for a grey preview, on the axis Square's windows read as the
        # channels: (8, 8, 1) and (32, 32, 3) are channels last (averaged over axis 0 they
        # drew as 8 x 1 and 32 x 3 strips; a review), (1, 8, 8) and (3, 32, 32) first
        array = array.mean(axis=2 if looks_channels_last(array.shape) else 0)
    return array


def fidelity_curve_svg(curve: Sequence[Mapping[str, float]], key: str) -> str:
    """Model extraction (EXT001): the stolen copy's agreement with the model per query budget.

    Parameters
    ----------
    curve:
        ``{"budget", "queries", "fidelity", "surrogate_accuracy"}`` per budget, increasing;
        a point is drawn at the queries its surrogate trained on (fewer than its budget
        when the run stopped early: drawn at the budget, it made the copy look dearer),
        at its budget when ``queries`` is absent.
    key:
        Unique name of the plot in its page.

    Example::

        svg = fidelity_curve_svg([{"budget": 100, "fidelity": 0.9,
                                   "surrogate_accuracy": 0.88}], key="ext")
    """
    budgets = [float(p.get("queries", p["budget"])) for p in curve]
    with _figure(key, 5.2, 3.4) as fig:
        ax: Axes = fig.add_subplot()
        ax.plot(budgets, [p["fidelity"] for p in curve], marker="o", color=_BLUE,
                label="fidelity (agrees with the model)")  # fmt: skip
        accuracy = [p.get("surrogate_accuracy") for p in curve]
        if all(isinstance(a, int | float) for a in accuracy):
            values = [float(a) for a in accuracy if a is not None]
            ax.plot(budgets, values, marker="s", color=_GREY, linestyle="--",
                    label="stolen copy's accuracy")  # fmt: skip
        ax.set_xlabel("queries spent")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.25)
        ax.legend(loc="best")
        return _to_svg(fig, key)
