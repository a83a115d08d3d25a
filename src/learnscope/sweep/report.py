"""A sweep's report, made only from the store: each final metric against each
swept axis (mean and 95% t-interval across seeds; a log x-axis for scale
parameters), a heatmap for a 2-D grid, the best trial marked, a table of
trials with mean [CI], and for a sweep of the learning rate each curve's LR
sensitivity (learnscope.sensitivity)."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from learnscope.errors import LearnscopeError
from learnscope.report import report_directory, save_figures, write_page
from learnscope.report.page import fmt
from learnscope.report.plots import new_figure
from learnscope.stats import mean_ci
from learnscope.sweep import Sweep, TrialRow, lower_is_better, lr_sensitivity
from learnscope.sweep.grid import Axis

SCALE_KEYS = ("lr", "weight_decay")


def log_axis(axis: Axis) -> bool:
    """Scale parameters (lr, weight_decay) and any axis whose positive values span 10x or more."""
    values = axis.values
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return False
    if any(v <= 0 for v in values):
        return False
    return axis.key.rsplit(".", 1)[-1] in SCALE_KEYS or max(values) / min(values) >= 10


def _numeric(axis: Axis) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in axis.values)


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _best(rows: Sequence[TrialRow], metric: str) -> TrialRow | None:
    scored = [(mean_ci(r.final[metric])[0], r) for r in rows if metric in r.final]
    scored = [(s, r) for s, r in scored if math.isfinite(s)]
    if not scored:
        return None
    sign = -1.0 if lower_is_better(metric) else 1.0
    return max(scored, key=lambda pair: (sign * pair[0], -pair[1].index))[1]


def axis_figure(metric: str, axis: Axis, others: Sequence[Axis], rows: Sequence[TrialRow]) -> Figure:
    """The metric against one axis; a line per combination of the other axes."""
    fig, ax = new_figure(5.2, 3.6)
    positions = {json.dumps(v): (v if _numeric(axis) else i) for i, v in enumerate(axis.values)}
    groups: dict[str, list[TrialRow]] = {}
    for row in rows:
        key = ", ".join(f"{o.label}={_label(row.values[o.label])}" for o in others)
        groups.setdefault(key, []).append(row)
    best = _best(rows, metric)
    for label, members in groups.items():
        points = [(positions[json.dumps(r.values[axis.label])], *mean_ci(r.final[metric]), r)
                  for r in members if metric in r.final]
        if not points:
            continue
        x = np.array([p[0] for p in points], dtype=float)
        mean = np.array([p[1] for p in points])
        low = np.array([p[2] for p in points])
        high = np.array([p[3] for p in points])
        err = np.vstack([np.where(np.isfinite(low), mean - low, 0), np.where(np.isfinite(high), high - mean, 0)])
        ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, label=label or None)
        for p in points:
            if best is not None and p[4].run_id == best.run_id:
                ax.plot([p[0]], [p[1]], marker="*", markersize=16, color="gold", markeredgecolor="black",
                        linestyle="none", label=f"best (t{best.index})", zorder=5)
    if log_axis(axis):
        ax.set_xscale("log")
        ax.minorticks_off()
    if _numeric(axis):
        ax.set_xticks([float(v) for v in axis.values], [_label(v) for v in axis.values])
    else:
        ax.set_xticks(range(len(axis.values)), [_label(v) for v in axis.values])
    ax.set_xlabel(axis.label)
    ax.set_ylabel(f"{metric} (final; mean, 95% CI)")
    ax.set_title(f"{metric} vs {axis.label}")
    ax.legend(fontsize=7)
    return fig


def heatmap_figure(metric: str, axes: Sequence[Axis], rows: Sequence[TrialRow]) -> Figure:
    """A 2-D grid: the metric's mean across seeds per cell, the best cell outlined."""
    first, second = axes
    grid = np.full((len(first.values), len(second.values)), np.nan)
    index_of = [{json.dumps(v): i for i, v in enumerate(a.values)} for a in axes]
    best = _best(rows, metric)
    best_cell = None
    for row in rows:
        if metric not in row.final:
            continue
        i = index_of[0][json.dumps(row.values[first.label])]
        j = index_of[1][json.dumps(row.values[second.label])]
        grid[i, j] = mean_ci(row.final[metric])[0]
        if best is not None and row.run_id == best.run_id:
            best_cell = (i, j)
    fig, ax = new_figure(5.2, 4.2)
    image = ax.imshow(grid, cmap="viridis_r" if lower_is_better(metric) else "viridis", aspect="auto", origin="lower")
    fig.colorbar(image, ax=ax, label=f"{metric} (mean)")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, fmt(float(grid[i, j])), ha="center", va="center", fontsize=8, color="white")
    if best_cell is not None:
        i, j = best_cell
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    ax.set_yticks(range(len(first.values)), [_label(v) for v in first.values])
    ax.set_xticks(range(len(second.values)), [_label(v) for v in second.values])
    ax.set_ylabel(first.label)
    ax.set_xlabel(second.label)
    ax.set_title(f"{metric}: best outlined")
    return fig


def trial_table(sweep: Sweep, rows: Sequence[TrialRow], metrics: Sequence[str], best: TrialRow | None) -> str:
    axes = [a.label for a in sweep.axes]
    head = "<tr><th>trial</th>" + "".join(f"<th>{html.escape(a)}</th>" for a in axes) + "<th>status</th>" \
        "<th>seconds</th>" + "".join(f"<th>{html.escape(m)} mean [95% CI]</th>" for m in metrics) + "</tr>"
    body = []
    for row in rows:
        mark = " ★" if best is not None and row.run_id == best.run_id else ""
        cells = [f"<td>{html.escape(row.run_id)}{mark}</td>"]
        cells += [f"<td>{html.escape(_label(row.values[a]))}</td>" for a in axes]
        cells += [f"<td>{html.escape(row.status)}</td>", f"<td>{fmt(row.duration) if row.duration else '–'}</td>"]
        for metric in metrics:
            mean, low, high = mean_ci(row.final.get(metric, []))
            cells.append(f"<td>{fmt(mean)} [{fmt(low)}, {fmt(high)}]</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def sensitivity_table(sweep: Sweep) -> str:
    """Each learning-rate curve's LR sensitivity, mean [CI] and per seed ("" if the sweep has no LR axis)."""
    try:
        rows = lr_sensitivity(sweep)
    except LearnscopeError as error:
        return f"<p>LR sensitivity not computed: {html.escape(str(error))}</p>"
    if not rows:
        return ""
    labels = list(rows[0].group)
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels) + "<th>arm</th><th>mean [95% CI]</th>" \
        "<th>per seed</th>"
    body = []
    for row in rows:
        cells = "".join(f"<td>{html.escape(_label(row.group[label]))}</td>" for label in labels)
        cells += f"<td>{html.escape(row.arm or '')}</td>"
        if row.missing:
            cells += f"<td>waits on {len(row.missing)} trials</td><td></td>"
        else:
            mean, low, high = mean_ci(row.values)
            cells += f"<td>{fmt(mean)} [{fmt(low)}, {fmt(high)}]</td><td>{' '.join(fmt(v) for v in row.values)}</td>"
        body.append(f"<tr>{cells}</tr>")
    return (f"<h3>LR sensitivity of {html.escape(rows[0].metric)}</h3><p>Over recipe.lr = {rows[0].rates}: the mean of "
            "min(loss, loss at initialization) minus the best loss, per seed (Wortsman et al.; a diverged seed "
            f"counts its loss at initialization).</p><table><tr>{head}</tr>{''.join(body)}</table>")


def sweep_figures(sweep: Sweep, rows: Sequence[TrialRow], metrics: Sequence[str]) -> list[tuple[str, Figure]]:
    axes = sweep.axes
    figures = []
    for metric in metrics:
        for axis in axes:
            others = [a for a in axes if a.label != axis.label]
            figures.append((f"{metric} vs {axis.label}", axis_figure(metric, axis, others, rows)))
        if len(axes) == 2:
            figures.append((f"{metric} heatmap", heatmap_figure(metric, axes, rows)))
    return figures


def write_sweep_report(sweep: Sweep, out: str | Path | None = None) -> Path:
    """Write a sweep's PNGs and index.html; returns the HTML path."""
    store = sweep.store
    out = report_directory(Path(out) if out else store.dir / "reports" / sweep.id)
    rows = sweep.trials()
    metrics = sweep.metrics(rows)
    best = _best(rows, metrics[0]) if metrics else None
    record = sweep.record
    sections = [
        f"<h2>sweep {html.escape(record.id)}</h2><p>{html.escape(record.name)} · status <b>{sweep.status}</b>"
        f"{' (' + html.escape(record.reason) + ')' if record.reason else ''} · seeds {record.seeds} · "
        f"{len(rows)} trials · axes " + ", ".join(html.escape(f"{a.label} = {a.values}") for a in sweep.axes) + "</p>",
        (f"<p>best trial by the mean of {html.escape(metrics[0])} "
         f"({'lower' if lower_is_better(metrics[0]) else 'higher'} is better): "
         f"<b>{html.escape(best.run_id)}</b> ★</p>") if best is not None and metrics else "<p>no metrics yet</p>",
        trial_table(sweep, rows, metrics, best),
        sensitivity_table(sweep),
    ]
    images = save_figures(store, [sweep.id], out, sweep_figures(sweep, rows, metrics))
    return write_page(store, [sweep.id], out, f"learnscope sweep — {sweep.id}", sections, images,
                      {sweep.id: record.spec})
