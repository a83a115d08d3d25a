"""Reports: PNG curves with seed bands and one offline HTML page, made
only from what the store holds."""

from __future__ import annotations

import hashlib
import html
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from learnscope import registry
from learnscope.continual import Stream, accuracy_matrix, arm_measures
from learnscope.errors import LearnscopeError
from learnscope.report.figures import render
from learnscope.report.page import arm_table, page, summary_table, verdict_block
from learnscope.report.plots import Series, accuracy_matrix_figure, curve_figures
from learnscope.runs import Run
from learnscope.store.sqlite import Store


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def report_run(run: Run, out: str | Path | None = None) -> Path:
    """Write a run's report (PNGs and index.html); returns the HTML path."""
    return write_report(run.store, [run.id], out)


def write_report(store: Store, run_ids: Sequence[str], out: str | Path | None = None) -> Path:
    """Write PNGs and index.html for one or more runs; returns the HTML path."""
    runs = [Run(store, run_id) for run_id in run_ids]
    out = Path(out) if out else store.dir / "reports" / "+".join(run_ids)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LearnscopeError(f"cannot create report directory {out}: {exc.strerror or exc}") from None

    series, sections, extra = [], [], []
    for run in runs:
        arms = {label or run.record.name: data for label, data in run.arm_data().items()}
        for label, data in arms.items():
            name = label if len(runs) == 1 else f"{run.id}:{label}"
            stream = Stream.of(data.experiment) if data.has_experiment else None  # a watch run has no schedule
            switches = tuple(block.start for block in stream.switches()) if stream else ()
            series.append(Series(name, data, switches))
            if stream is not None and arm_measures(data) is not None:
                extra.append((f"{name} accuracy matrix", accuracy_matrix_figure(name, accuracy_matrix(data, stream)[0])))
        record = run.record
        sections.append(
            f"<h2>{html.escape(record.id)}</h2><p>{html.escape(record.name)} · status <b>{record.status}</b>"
            f"{' (' + html.escape(record.reason) + ')' if record.reason else ''} · seeds {record.seeds}"
            f" · learnscope {html.escape(record.version)} on {html.escape(record.host)}</p>"
        )
        verdict = run.verdict
        known = record.kind == "phenomenon" and record.name in registry.phenomena
        thresholds = registry.phenomena.get(record.name).thresholds if known else ()
        sections.append(verdict_block(record.name, verdict, thresholds))
        summary = run.summary()
        sections.extend(arm_table(table) for table in run.tables(summary))
        if record.kind == "phenomenon" and record.name in registry.phenomena:
            extra.extend(render(f) for f in registry.phenomena.get(record.name)().figures(arms))
        sections.append(summary_table(summary))

    images = []
    for caption, fig in curve_figures(series) + extra:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        png = buffer.getvalue()
        path = out / f"{_slug(caption)}.png"
        path.write_bytes(png)
        images.append((caption, png))
        for run in runs:
            store.add_artifact(run.id, "plot", str(path), hashlib.sha256(png).hexdigest())

    title = " + ".join(run.id for run in runs)
    specs = {run.id: run.record.spec for run in runs}
    document = page(f"learnscope report — {title}", sections, images, specs).encode()
    index = out / "index.html"
    index.write_bytes(document)
    for run in runs:
        store.add_artifact(run.id, "report", str(index), hashlib.sha256(document).hexdigest())
    return index
