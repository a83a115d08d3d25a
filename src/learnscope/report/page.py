"""One self-contained HTML page: images inlined as data URIs, no scripts,
no external styles, so it opens offline and can be mailed as one file."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence

import pandas as pd

from learnscope.stats import CI_DESCRIPTION, fmt

__all__ = ["fmt"]  # where the sweep report and older callers find it

CI_CAPTION = f"<caption>95% CI: {html.escape(CI_DESCRIPTION)}</caption>"


def summary_table(summary: pd.DataFrame) -> str:
    head = "<tr><th>arm</th><th>metric</th><th>mean</th><th>std</th><th>95% CI</th><th>per seed</th></tr>"
    rows = []
    for r in summary.itertuples():
        seeds = " ".join(fmt(v) for v in r.values)
        rows.append(
            f"<tr><td>{html.escape(r.arm)}</td><td>{html.escape(r.metric)}</td><td>{fmt(r.mean)}</td>"
            f"<td>{fmt(r.std)}</td><td>[{fmt(r.ci_low)}, {fmt(r.ci_high)}]</td><td class=seeds>{seeds}</td></tr>"
        )
    return f"<table>{CI_CAPTION}{head}{''.join(rows)}</table>"


def arm_table(table) -> str:
    """Arms side by side (`Run.tables`): mean [95% CI] across seeds."""
    ranked = "rank" in table.rows.columns
    head = "<tr>" + ("<th>rank</th>" if ranked else "") + "<th>arm</th>" + "".join(
        f"<th>{html.escape(label)} (95% CI)</th>" for label in table.labels) + "</tr>"
    rows = []
    for r in table.rows.to_dict("records"):
        cells = "".join(f"<td>{fmt(r[label])} [{fmt(r[label + ' low'])}, {fmt(r[label + ' high'])}]</td>"
                        for label in table.labels)
        rank = f"<td>{r['rank']}</td>" if ranked else ""
        rows.append(f"<tr>{rank}<td>{html.escape(r['arm'])}</td>{cells}</tr>")
    return f"<h3>{html.escape(table.title.capitalize())}</h3><table>{CI_CAPTION}{head}{''.join(rows)}</table>"


def verdict_block(name: str, verdict, thresholds: Sequence = ()) -> str:
    """The verdict line, what was claimed (and in which seeds it held), the
    thresholds with the ranges measured when they were set, and the measures."""
    if verdict is None:
        return ""
    cls = "pass" if verdict.ok else "fail"
    seeds = "".join(f"<th>seed {s}</th>" for s in verdict.seeds)
    held = "".join(f"<td>{'yes' if p else 'no'}</td>" for p in verdict.passed)
    claims = "".join(
        f"<tr><td>{html.escape(c['statement'])}</td>" + "".join(f"<td>{'yes' if h else 'no'}</td>" for h in c["holds"])
        + "</tr>" for c in verdict.claims
    )
    measures = "".join(
        f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{fmt(v)}</td>" for v in values) + "</tr>"
        for k, values in verdict.measures.items()
    )
    limits = "".join(f"<li>{html.escape(t.describe())}</li>" for t in thresholds)
    return (
        f"<p class={cls}>{html.escape(verdict.line(name))}</p>"
        + (f"<p>thresholds:</p><ul>{limits}</ul>" if limits else "")
        + f"<table><tr><th>claim</th>{seeds}</tr><tr><td>signature holds</td>{held}</tr>{claims}</table>"
        f"<table><tr><th>measure</th>{seeds}</tr>{measures}</table>"
    )


def page(title: str, sections: Sequence[str], images: Sequence[tuple[str, bytes]], spec: dict) -> str:
    figures = "".join(
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, png in images
    )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,td:nth-child(2){text-align:left}"
        ".seeds{font-family:monospace;font-size:11px;text-align:left}"
        "figure{display:inline-block;margin:.5em}img{max-width:520px}"
        ".pass{color:#126b2e;font-weight:bold}.fail{color:#a11;font-weight:bold}"
        "pre{background:#f6f6f6;padding:1em;font-size:12px;overflow:auto}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}"
        f"<h2>Curves</h2>{figures}<h2>Spec</h2><pre>{html.escape(json.dumps(spec, indent=2))}</pre></body></html>"
    )
