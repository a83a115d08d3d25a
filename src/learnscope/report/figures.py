"""Drawing the figures phenomena ask for as data (learnscope.results:
Bands, Sweep, Tradeoff), so the catalog never imports matplotlib."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from learnscope.report.plots import band_plot, cycle_colors, new_figure
from learnscope.results import Bands, Sweep, Tradeoff


def bands_figure(data: Bands) -> Figure:
    fig, ax = new_figure(7, 4.2)
    colors = cycle_colors()
    for i, (label, x, values) in enumerate(data.lines):
        band_plot(ax, x, values, label, colors[i % len(colors)])
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel(data.ylabel)
    if data.ylim is not None:
        ax.set_ylim(*data.ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(data.title, fontsize=10)
    return fig


def tradeoff_figure(data: Tradeoff) -> Figure:
    """x against y along training: per line the mean across seeds at each
    probe, with a band spanning the lowest to the highest seed's y there;
    reference points as the mean, bars from the lowest to the highest seed."""
    fig, ax = new_figure(7, 4.8)
    colors = cycle_colors()
    for i, (name, (xs, ys)) in enumerate(data.lines.items()):
        with np.errstate(all="ignore"):
            mx, my = np.nanmean(xs, axis=0), np.nanmean(ys, axis=0)
            low, high = np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)
        color = colors[i % len(colors)]
        ax.plot(mx, my, color=color, linewidth=1.6, label=name)
        ax.fill_between(mx, low, high, color=color, alpha=0.15, linewidth=0)
        ax.plot(mx[-1:], my[-1:], marker="o", color=color, markersize=4)
    for (name, (fx, fy)), marker in zip(data.references.items(), ("s", "*", "D", "^")):
        mx, my = float(np.nanmean(fx)), float(np.nanmean(fy))
        ax.errorbar([mx], [my], xerr=[[max(mx - np.nanmin(fx), 0.0)], [max(np.nanmax(fx) - mx, 0.0)]],
                    yerr=[[max(my - np.nanmin(fy), 0.0)], [max(np.nanmax(fy) - my, 0.0)]], fmt=marker, color="black",
                    markersize=9 if marker == "*" else 6, capsize=3, label=name, zorder=5)
    ax.set_xlabel(f"{data.x} (forget quality: lower is more forgotten)")
    ax.set_ylabel(f"{data.y} (utility)")
    ax.set_title(data.title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def sweep_figure(data: Sweep) -> Figure:
    """One panel per measure, one line per method, at each tick the mean
    across seeds with a band from the lowest to the highest seed."""
    fig, axes = new_figure(4.4 * len(data.panels), 4.2, cols=len(data.panels))
    axes = np.atleast_1d(axes)
    colors = cycle_colors()
    for ax, (measure, lines) in zip(axes, data.panels.items()):
        for i, (label, values) in enumerate(lines.items()):
            at = [x for x, v in enumerate(values) if v is not None]
            stacked = np.stack([values[x] for x in at], axis=1)  # seeds × ticks
            band_plot(ax, np.array(at), stacked, label, colors[i % len(colors)], marker="o")
        ax.set_xticks(range(len(data.ticks)), data.ticks)
        ax.set_xlabel(data.xlabel)
        ax.set_ylabel(measure)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{data.title}\nline: mean of seeds; band: lowest to highest seed", fontsize=10)
    return fig


def render(data: Bands | Sweep | Tradeoff) -> tuple[str, Figure]:
    """(caption, matplotlib figure) of a phenomenon's figure."""
    draw = {Bands: bands_figure, Sweep: sweep_figure, Tradeoff: tradeoff_figure}[type(data)]
    return data.caption, draw(data)  # type: ignore[operator]
