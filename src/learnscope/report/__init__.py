"""Reports: PNG curves with seed bands and one offline HTML page, made
only from what the store holds."""

from __future__ import annotations

import hashlib
import html
import io
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

import yaml
from matplotlib.figure import Figure

from learnscope import registry
from learnscope.continual import Stream, accuracy_matrix, arm_measures
from learnscope.errors import LearnscopeError
from learnscope.provenance import ENVIRONMENT_EVENT, phenomenon_command
from learnscope.report.attention import attention_figures
from learnscope.report.figures import render
from learnscope.report.page import arm_table, page, summary_table, verdict_block
from learnscope.report.plots import Series, accuracy_matrix_figure, curve_figures
from learnscope.runner import DEVICE_EVENT
from learnscope.runs import Run
from learnscope.store.sqlite import Store

SLUG_CHARS = 100  # a file name's bytes are bounded (255 on most file systems); a caption is not


def _slug(text: str) -> str:
    """A file name for a caption: a long one is cut, and keeps a hash of the whole
    so that two captions sharing their start still name two files."""
    slug = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in text)
    if len(slug) <= SLUG_CHARS:
        return slug
    return f"{slug[:SLUG_CHARS - 13]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def report_run(run: Run, out: str | Path | None = None) -> Path:
    """Write a run's report (PNGs and index.html); returns the HTML path."""
    return write_report(run.store, [run.id], out)


def write_report(store: Store, run_ids: Sequence[str], out: str | Path | None = None) -> Path:
    """Write PNGs and index.html for one or more runs; returns the HTML path."""
    runs = [Run(store, run_id) for run_id in run_ids]
    out = report_directory(Path(out) if out else store.dir / "reports" / "+".join(run_ids))

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
            extra.extend(attention_figures(store, {name: data}))
        record = run.record
        sections.append(
            f"<h2>{html.escape(record.id)}</h2><p>{html.escape(record.name)} · status <b>{record.status}</b>"
            f"{' (' + html.escape(record.reason) + ')' if record.reason else ''} · seeds {record.seeds}"
            f" · learnscope {html.escape(record.version)} on {html.escape(record.host)}</p>"
        )
        sections.append(provenance_block(run, out, len(runs) > 1))
        verdict = run.verdict
        known = record.kind == "phenomenon" and record.name in registry.phenomena
        thresholds = registry.phenomena.get(record.name).thresholds if known else ()
        sections.append(verdict_block(record.name, verdict, thresholds))
        summary = run.summary()
        sections.extend(arm_table(table) for table in run.tables(summary))
        if record.kind == "phenomenon" and record.name in registry.phenomena:
            extra.extend(render(f) for f in registry.phenomena.get(record.name)().figures(arms))
        sections.append(summary_table(summary))

    ids = [run.id for run in runs]
    images = save_figures(store, ids, out, curve_figures(series) + extra)
    specs = {run.id: run.record.spec for run in runs}
    return write_page(store, ids, out, f"learnscope report — {' + '.join(ids)}", sections, images, specs)


def provenance_block(run: Run, out: Path, several: bool) -> str:
    """How to make the run again (an experiment's spec is written beside the
    page), what it ran on, and how long each arm took."""
    record, store = run.record, run.store
    devices = store.events(run.id, DEVICE_EVENT)
    device = devices[0]["detail"]["device"] if devices else "cpu"
    on_device = [] if device == "cpu" else ["--device", device]
    if record.kind == "phenomenon":
        spec = record.spec
        command = phenomenon_command(record.name, spec["quick"], spec.get("seeds"), spec.get("overrides", []))
        command += "".join(f" {shlex.quote(part)}" for part in on_device)
    elif record.kind == "experiment":
        spec_path = out / (f"spec-{record.id}.yaml" if several else "spec.yaml")
        spec_path.write_text(yaml.safe_dump(record.spec, sort_keys=False))
        command = shlex.join(["learnscope", "run", str(spec_path), *on_device])
    else:
        command = "(recorded by ls.watch in its own training loop: that loop's code makes it again)"
    found = store.events(run.id, ENVIRONMENT_EVENT)
    env = found[0]["detail"] if found else {"learnscope": record.version, "host": record.host}
    software = " · ".join(f"{key} {html.escape(str(env[key]))}" for key in ("learnscope", "torch", "python")
                          if env.get(key))
    commit = f" · git {html.escape(env['git'])}" if env.get("git") else " · not run from a git checkout"
    times = "".join(f"<li>{html.escape(arm.arm or arm.id)}: {arm.finished - arm.created:.1f} s</li>"
                    for arm in run.arms if arm.finished is not None)
    return (f"<p>reproduce: <code>{html.escape(command)}</code></p>"
            f"<p>{software}{commit} · {html.escape(str(env.get('host', record.host)))} · {html.escape(device)}</p>"
            + (f"<p>wall time per arm:</p><ul>{times}</ul>" if times else ""))


def report_directory(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LearnscopeError(f"cannot create report directory {out}: {exc.strerror or exc}; pass -o DIR") from None
    if not os.access(out, os.W_OK):
        raise LearnscopeError(f"cannot write the report to {out}: permission denied; pass -o DIR")
    return out


def save_figures(store: Store, run_ids: Sequence[str], out: Path, figures: Sequence[tuple[str, Figure]]
                 ) -> list[tuple[str, bytes]]:
    """Each (caption, figure) as a PNG in `out`, recorded as a plot of the runs; returns (caption, PNG bytes)."""
    images = []
    for caption, fig in figures:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        png = buffer.getvalue()
        path = out / f"{_slug(caption)}.png"
        path.write_bytes(png)
        images.append((caption, png))
        for run_id in run_ids if not store.read_only else ():  # a read-only store is reported, not recorded in
            store.add_artifact(run_id, "plot", str(path), hashlib.sha256(png).hexdigest())
    return images


def write_page(store: Store, run_ids: Sequence[str], out: Path, title: str, sections: Sequence[str],
               images: Sequence[tuple[str, bytes]], specs: dict) -> Path:
    """index.html of the sections and images, recorded as the runs' report; returns its path."""
    document = page(title, sections, images, specs).encode()
    index = out / "index.html"
    index.write_bytes(document)
    for run_id in run_ids if not store.read_only else ():
        store.add_artifact(run_id, "report", str(index), hashlib.sha256(document).hexdigest())
    return index
