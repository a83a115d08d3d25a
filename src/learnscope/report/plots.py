"""Curves over steps with seed bands: the mean across seeds as a line, the
band spanning the lowest and highest seed. Steps on a log axis (symlog, so
step 0 stays visible): training dynamics span orders of magnitude."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from learnscope.results import ArmData


@dataclass
class Series:
    label: str
    arm: ArmData
    switches: tuple[int, ...] = ()  # steps where a stream switches experience, marked on the curves


def family(metric: str) -> str:
    """Metrics plotted together: accuracy/train with accuracy/test, nc1..nc4 apart."""
    return metric.split("/", 1)[0]


def metric_families(series: list[Series]) -> dict[str, list[str]]:
    families: dict[str, set[str]] = defaultdict(set)
    for s in series:
        for name in s.arm.frame["name"].unique():
            families[family(name)].add(name)
    return {f: sorted(names) for f, names in sorted(families.items())}


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, sharex: bool = False):
    """(figure, axes) laid out by matplotlib's constrained layout: long legends
    and labels fit without warnings. One axes, or a grid of rows × cols.
    A bare Figure, not pyplot's: nothing global to close, and pyplot (with its
    backend machinery) is not imported for a PNG."""
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig, fig.subplots(rows, cols, sharex=sharex)


def cycle_colors() -> list:
    """The default colour cycle."""
    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def band_plot(ax, steps: np.ndarray, values: np.ndarray, label: str, color, linestyle="-", marker=None) -> None:
    """values [seeds, points]: the mean as a line, a band from the lowest to the highest seed;
    nothing for no seeds (every seed diverged)."""
    if values.size == 0:
        return
    finite = np.where(np.isfinite(values), values, np.nan)
    with np.errstate(all="ignore"):
        mean = np.nanmean(finite, axis=0)
        low, high = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
    ax.plot(steps, mean, color=color, linestyle=linestyle, label=label, linewidth=1.6, marker=marker, markersize=4)
    ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)


LEGEND_INSIDE = 8  # a legend with more entries goes beside the axes, in a column of its own
LEGEND_ENTRY_INCHES = 0.18


def family_figure(name: str, metrics: list[str], series: list[Series]) -> Figure:
    """A family's curves. Several arms with several metrics: one panel per
    metric, a colour per arm (one line each would not be told apart);
    otherwise one panel."""
    split = len(series) > 1 and len(metrics) > 1
    panels = [[m] for m in metrics] if split else [metrics]
    entries = len(series) if split else len(series) * len(metrics)
    beside = entries > LEGEND_INSIDE
    height = max(2.6 * len(panels) if split else 4.2, LEGEND_ENTRY_INCHES * entries + 0.8 if beside else 0)
    fig, axes = new_figure(7 + (3 if beside else 0), height, rows=len(panels), sharex=True)
    axes = np.atleast_1d(axes)
    colors = cycle_colors()
    if len(series) > len(colors):  # past the default cycle, twice as many distinct colours
        colors = list(matplotlib.colormaps["tab20"].colors)
    styles = ["-", "--", ":", "-."]
    switches = sorted({step for s in series for step in s.switches})
    for ax, shown in zip(axes, panels):
        positive, span = True, (np.inf, -np.inf)
        for i, s in enumerate(series):
            for j, metric in enumerate(shown):
                if metric not in set(s.arm.frame["name"]):
                    continue
                steps, values = s.arm.curve(metric)
                parts = [p for p in (s.label, metric if len(shown) > 1 else "") if p]
                color = colors[(j if len(series) == 1 else i) % len(colors)]
                style = styles[(j if len(series) > 1 else 0) % len(styles)]
                band_plot(ax, steps, values, " · ".join(parts) or metric, color, style)
                finite = values[np.isfinite(values)]
                if finite.size:
                    positive &= bool((finite > 0).all())
                    span = (min(span[0], finite.min()), max(span[1], finite.max()))
        for step in switches:  # a stream: equal blocks read best on a linear axis, switches marked
            ax.axvline(step, color="0.6", linewidth=0.8, linestyle=":")
        if not switches:
            ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        if positive and span[1] > 100 * span[0] > 0:
            ax.set_yscale("log")
        ax.set_ylabel(shown[0] if split else name)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("step (dotted: switch of experience)" if switches else "step (log scale)")
    axes[0].set_title(f"{name} — mean across seeds, band: min to max seed", fontsize=10)
    if beside:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=7)
    elif axes[0].get_legend_handles_labels()[0]:  # no line to label when every seed diverged
        axes[0].legend(fontsize=8, loc="best")
    return fig


def curve_figures(series: list[Series]) -> list[tuple[str, Figure]]:
    return [(name, family_figure(name, metrics, series)) for name, metrics in metric_families(series).items()]


def accuracy_matrix_figure(label: str, R: np.ndarray) -> Figure:
    """Heatmap of the accuracy matrix, mean across seeds: R[i, j] is the accuracy
    on experience j after training on experience i."""
    mean = np.nanmean(R, axis=0)
    E = mean.shape[0]
    fig, ax = new_figure(1.2 + 0.7 * E, 1.0 + 0.6 * E)
    image = ax.imshow(mean, vmin=0, vmax=1, cmap="viridis")
    for i in range(E):
        for j in range(E):
            ax.text(j, i, f"{mean[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if mean[i, j] < 0.6 else "black")
    ax.set_xticks(range(E))
    ax.set_yticks(range(E))
    ax.set_xlabel("accuracy on experience j")
    ax.set_ylabel("after training on experience i")
    ax.set_title(f"{label}: accuracy matrix (mean of {R.shape[0]} seeds)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return fig
