"""The command line: list, run, sweep, resume, verify, sites, show, runs, compare, report, export.

Bad input ends in one line on stderr naming what is wrong and what is
valid, exit code 2, no traceback. Human output goes to stdout; with --json,
stdout's last line is one JSON object and everything else goes to stderr.
"""

from __future__ import annotations

import functools
import json
import math
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from learnscope import registry
from learnscope.errors import LearnscopeError, RunInterrupted, did_you_mean

# Each command imports what it uses, in its body: `--help`, `list`, `runs` and `show` load
# no torch, and training loads no pandas, matplotlib or scipy before the summary and the
# report need them (tests/test_cli_imports.py; the README's performance section).
if TYPE_CHECKING:
    from learnscope.compare import Comparison
    from learnscope.runs import ArmTable, Run
    from learnscope.store.sqlite import Store

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="learnscope: a laboratory for how neural networks learn, generalize, memorize and forget.",
)

def versions() -> str:
    """learnscope's, torch's and Python's versions (torch's from its metadata: not imported for this)."""
    from importlib.metadata import PackageNotFoundError, version

    from learnscope.version import __version__

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    return f"learnscope {__version__}, torch {torch_version}, Python {platform.python_version()}"


def _print_version(value: bool) -> None:
    if value:
        print(versions())
        raise typer.Exit(0)


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="learnscope's, torch's and Python's versions")] = False,
) -> None:
    """learnscope: a laboratory for how neural networks learn, generalize, memorize and forget."""


StoreOpt = Annotated[
    Optional[Path], typer.Option("--store", help="store directory (default ./learnscope-runs or $LEARNSCOPE_STORE)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="end with one JSON object on stdout")]
SeedsOpt = Annotated[Optional[int], typer.Option("--seeds", min=1, help="number of seeds (0..N-1)")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", help="override a spec key: --set recipe.lr=3e-4; one arm of a phenomenon: --set ARM:recipe.lr=3e-4")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="the phenomenon's small size (seconds)")]
DeviceOpt = Annotated[Optional[str], typer.Option(
    "--device", help="where to train: cpu (default), auto (CUDA if there, then MPS, else CPU), cuda, cuda:N or mps")]


def _load_plugins(targets: list[str] | None) -> list[str]:
    for target in targets or []:
        registry.load_plugin(target)
    return targets or []


PluginOpt = Annotated[
    Optional[list[str]],
    typer.Option("--plugin", callback=_load_plugins, is_eager=True,
                 help="a module or .py file whose components register themselves (repeatable; "
                      "also $LEARNSCOPE_PLUGINS)"),
]


def _console(as_json: bool) -> Console:
    stream = sys.stderr if as_json else sys.stdout
    # piped or redirected output has no screen to fit: Rich would squeeze tables to 80
    # columns and cut run ids and metric names ("accuracy/t…"), so give it room instead
    width = None if stream.isatty() else 240
    return Console(file=stream, highlight=False, soft_wrap=True, width=width)


def _existing_store(store: Path | None) -> Store:
    from learnscope.store.sqlite import Store

    return Store(store, create=False)


def fmt(value: Any) -> str:
    """A number as the report shows it (stats.fmt; numpy loads with it, not with --help)."""
    from learnscope.stats import fmt as stats_fmt

    return stats_fmt(value)


def _progress(enabled: bool):
    from learnscope.progress import TrainingProgress

    return TrainingProgress(Console(stderr=True), enabled=enabled)


# ------------------------------------------------------------------ list


@app.command("list")
def list_phenomena(
    name: Annotated[Optional[str], typer.Argument(help="a phenomenon: its arms, claims and thresholds")] = None,
    as_json: JsonOpt = False,
    plugin: PluginOpt = None,
) -> None:
    """The phenomenon catalog: name, one line, source paper; or one phenomenon in full."""
    if name is not None:
        _show_phenomenon(name, as_json)
        return
    entries = [{"name": entry_name, "summary": summary, "source": source}
               for entry_name, summary, source in registry.catalog_listing()]
    if as_json:
        print(json.dumps(entries))
        return
    table = Table("phenomenon", "what it shows", "source")
    for e in entries:
        table.add_row(e["name"], e["summary"], e["source"])
    _console(False).print(table)


def _show_phenomenon(name: str, as_json: bool) -> None:
    from learnscope.runner import phenomenon_arms

    cls = registry.phenomena.get(name, "phenomenon")
    sizes = {size: phenomenon_arms(name, quick=size == "quick")[1] for size in ("full", "quick")}
    entry = {
        "name": name, "summary": cls.summary, "source": cls.source, "required_share": cls.required_share,
        "arms": {size: [{"name": a.name, "starts_from": a.starts_from, "seeds": a.experiment.seed_list,
                         "steps": a.experiment.recipe.steps} for a in arms.values()]
                 for size, arms in sizes.items()},
        "thresholds": [t.as_dict() for t in cls.thresholds],
        "moves_together": [list(group) for group in cls.moves_together],
    }
    if as_json:
        print(json.dumps(entry))
        return
    console = _console(False)
    console.print(f"[bold]{name}[/bold]: {cls.summary}")
    console.print(f"source: {cls.source}")
    for size, arms in sizes.items():
        shown = ", ".join(a.name + (f" (from {a.starts_from})" if a.starts_from else "") for a in arms.values())
        first = next(iter(arms.values())).experiment
        console.print(f"arms ({size}: {len(first.seed_list)} seeds, {first.recipe.steps} steps): {shown}")
    share = "every seed" if cls.required_share >= 1 else f"{cls.required_share:.0%} of the seeds"
    console.print(f"the signature must hold in {share}; thresholds (measured: range across seeds when set):")
    table = Table("threshold", "value", "what it bounds", "measure", "measured full", "measured quick")
    for t in cls.thresholds:
        ranges = [f"{lo:.3g} to {hi:.3g}" if (lo, hi) != (None, None) else "" for lo, hi in
                  (t.measured.get(size, (None, None)) for size in ("full", "quick"))]
        table.add_row(t.name, f"{float(t):g}", t.bounds, t.measure or "", *ranges)
    console.print(table)
    for group in cls.moves_together:
        console.print(f"moves together (set per arm, --set ARM:key=value): {', '.join(group)}")


# ------------------------------------------------------------------ run


def _final_json(run: Run) -> dict:
    final: dict = {}
    for row in run.final().itertuples():
        value = None if not math.isfinite(row.value) else row.value
        target = final.setdefault(row.arm, {}) if run.record.kind == "phenomenon" else final
        target.setdefault(row.name, {})[str(row.seed)] = value
    return final


def _print_summary(run: Run, console: Console) -> None:
    from learnscope.stats import CI_DESCRIPTION

    record = run.record
    console.print(
        f"[bold]{record.id}[/bold]  {record.name}  status [bold]{run.status}[/bold]"
        + (f" ({record.reason})" if record.reason else "")
        + f"  seeds {record.seeds}"
    )
    for arm, seeds in run.diverged.items():
        where = f"{arm}: " if arm else ""
        steps = ", ".join(f"seed {seed} at step {step}" for seed, step in sorted(seeds.items()))
        console.print(f"[red]diverged[/red] {where}{steps} (frozen; left out of statistics and the signature)")
    summary = run.summary()
    if summary.empty:
        console.print("no metrics recorded")
    else:
        multi_arm = summary["arm"].nunique() > 1 or bool(summary["arm"].iloc[0])
        table = Table(*(["arm"] if multi_arm else []), "metric", "mean", "std", "95% CI", "per seed")
        for r in summary.itertuples():
            cells = [r.metric, fmt(r.mean), fmt(r.std), f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]",
                     " ".join(fmt(v) for v in r.values)]
            table.add_row(*([r.arm] if multi_arm else []), *cells)
        console.print(table)
        for compared in run.tables(summary):
            console.print(_arm_table(compared))
        console.print(f"95% CI: {CI_DESCRIPTION}")
    verdict = run.verdict
    if verdict is not None:
        table = Table("measure", *(f"seed {s}" for s in verdict.seeds))
        table.add_row("signature holds", *("yes" if p else "[red]no[/red]" for p in verdict.passed))
        for claim in verdict.claims:
            table.add_row(f"claim: {claim['statement']}", *("yes" if h else "[red]no[/red]" for h in claim["holds"]))
        for name, values in verdict.measures.items():
            table.add_row(name, *(fmt(v) for v in values))
        console.print(table)


def _arm_table(compared: ArmTable) -> Table:
    """Arms side by side (`Run.tables`), as the report shows them."""
    ranked = "rank" in compared.rows.columns
    table = Table(*(["rank"] if ranked else []), "arm", *(f"{label} (95% CI)" for label in compared.labels),
                  title=f"{compared.title}: mean [95% CI] across seeds")
    for r in compared.rows.to_dict("records"):
        cells = [f"{fmt(r[label])} [{fmt(r[label + ' low'])}, {fmt(r[label + ' high'])}]" for label in compared.labels]
        table.add_row(*([str(r["rank"])] if ranked else []), r["arm"], *cells)
    return table


def _is_spec_file(target: str) -> bool:
    return Path(target).suffix.lower() in (".yaml", ".yml", ".toml", ".json") or Path(target).is_file()


def _unknown_target(target: str) -> LearnscopeError:
    names = registry.phenomena.names()
    return LearnscopeError(
        f"'{target}' is neither a phenomenon nor a spec file; phenomena: {', '.join(names)}"
        f"{did_you_mean(target, names)}"
    )


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="a phenomenon name (see `learnscope list`) or a spec file")],
    seeds: SeedsOpt = None,
    quick: QuickOpt = False,
    overrides: SetOpt = None,
    store: StoreOpt = None,
    plugin: PluginOpt = None,
    run_id: Annotated[Optional[str], typer.Option("--run-id", help="id for the new run")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="write the report at the end")] = True,
    as_json: JsonOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Run a phenomenon or a spec file across seeds, into the store."""
    from learnscope.runner import run_experiment, run_phenomenon
    from learnscope.spec import load_experiment
    from learnscope.train.devices import resolve_device

    where = resolve_device(device or "cpu")  # a device not on this machine: one line, before any work
    console = _console(as_json)
    progress = _progress(sys.stderr.isatty() or not as_json)
    if target in registry.phenomena:
        result = run_phenomenon(target, quick, seeds, overrides or (), store, run_id, progress, where)
    elif _is_spec_file(target):
        if quick:
            raise LearnscopeError("--quick applies to phenomena; for a spec file set its size with --set")
        experiment = load_experiment(target, overrides or (), seeds)
        result = run_experiment(experiment, store, Path(target).stem, run_id, progress, device=where)
    else:
        raise _unknown_target(target)
    _conclude(result, target, console, report, as_json)


def _conclude(result: Run, name: str, console: Console, report: bool, as_json: bool) -> None:
    """After a run: summary, report, verdict line, and the JSON object with --json."""
    _print_summary(result, console)
    report_path = None
    if report:
        from learnscope.report import report_run

        report_path = report_run(result)
    if report_path:
        console.print(f"report: {report_path}")
    verdict = result.verdict
    if verdict is not None:
        console.print(verdict.line(name))
    if as_json:
        payload = {"run_id": result.id, "status": result.status, "seeds": result.record.seeds,
                   "final": _final_json(result), "report": str(report_path) if report_path else None,
                   "diverged": {arm: {str(k): v for k, v in seeds.items()} for arm, seeds in result.diverged.items()}}
        if verdict is not None:
            payload["verdict"] = verdict.as_dict()
        print(json.dumps(_finite(payload)))
    record = result.store.get_run(result.id)
    if record.status == "failed":  # it ran to its end, and has nothing to show for it
        print(f"error: run {result.id} failed: {record.reason}", file=sys.stderr)
        raise typer.Exit(1)


BackendOpt = Annotated[str, typer.Option(
    "--backend", help="where trials run: local (this process, one after another) or ray (a Ray task each: a "
                      "local Ray instance, or the cluster at --address)")]
AddressOpt = Annotated[Optional[str], typer.Option(
    "--address", help="--backend ray: the Ray cluster to join, e.g. ray://HEAD:10001 or auto (ray.init(address=...))")]
WorkersOpt = Annotated[Optional[int], typer.Option(
    "--workers", help="--backend ray without --address: start a local Ray instance with this many CPUs, one "
                      "trial on each (default: all)")]


@app.command()
def sweep(
    target: Annotated[str, typer.Argument(help="a phenomenon name (see `learnscope list`) or a spec file")],
    grid: Annotated[list[str], typer.Option(
        "--grid", help="a swept key and its values: --grid recipe.lr=0.03,0.1,0.3; one arm of a phenomenon: "
                       "--grid ARM:recipe.lr=...; lists: --grid 'model.hidden=[32],[64]' (repeatable: the "
                       "Cartesian product)")],
    seeds: SeedsOpt = None,
    quick: QuickOpt = False,
    overrides: SetOpt = None,
    backend: BackendOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    store: StoreOpt = None,
    plugin: PluginOpt = None,
    run_id: Annotated[Optional[str], typer.Option("--run-id", help="id for the new sweep")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="write the sweep report at the end")] = True,
    as_json: JsonOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Run a phenomenon or a spec file at every point of a grid of values, every trial with the same seeds."""
    from learnscope.sweep import run_sweep
    from learnscope.sweep.backends import get_backend
    from learnscope.train.devices import resolve_device

    get_backend(backend, address, workers)  # an unknown backend, Ray missing: one line, before any work
    where = resolve_device(device or "cpu")
    if target not in registry.phenomena and not _is_spec_file(target):
        raise _unknown_target(target)
    console = _console(as_json)
    progress = _progress(sys.stderr.isatty() or not as_json)
    swept = run_sweep(target, grid, seeds, quick, overrides or (), store, backend, run_id, progress, where,
                      address, workers)
    _conclude_sweep(swept, console, report, as_json)


def _conclude_sweep(swept, console: Console, report: bool, as_json: bool) -> None:
    rows = swept.trials()
    _print_sweep(swept, rows, console)
    report_path = None
    if report:
        from learnscope.sweep.report import write_sweep_report

        report_path = write_sweep_report(swept)
        console.print(f"report: {report_path}")
    if as_json:
        payload = {"sweep_id": swept.id, "status": swept.status, "seeds": swept.record.seeds,
                   "axes": {a.label: a.values for a in swept.axes},
                   "trials": [{"run_id": r.run_id, "values": r.values, "status": r.status,
                               "duration": r.duration} for r in rows],
                   "report": str(report_path) if report_path else None}
        try:
            best, metric = swept.best(None, rows)
            payload["best"] = {"run_id": best.run_id, "metric": metric}
        except LearnscopeError:
            payload["best"] = None
        print(json.dumps(_finite(payload), default=str))


def _print_sweep(swept, rows, console: Console) -> None:
    from learnscope.stats import mean_ci
    from learnscope.sweep import lower_is_better

    record = swept.record
    console.print(f"[bold]{record.id}[/bold]  sweep of {record.name}  status [bold]{swept.status}[/bold]"
                  + (f" ({escape(record.reason)})" if record.reason else "") + f"  seeds {record.seeds}")
    metrics = swept.metrics(rows)
    headline = metrics[0] if metrics else None
    best = None
    if headline:
        try:
            best = swept.best(headline, rows)[0]
        except LearnscopeError:
            best = None
    labels = [a.label for a in swept.axes]
    table = Table("trial", *(escape(label) for label in labels), "status", "seconds",
                  *([f"{escape(headline)} mean [95% CI]"] if headline else []))
    for r in rows:
        cells = [r.run_id + (" ★" if best is not None and r.run_id == best.run_id else ""),
                 *(escape(json.dumps(r.values[label])) for label in labels), r.status,
                 fmt(r.duration) if r.duration is not None else "–"]
        if headline:
            mean, low, high = mean_ci(r.final.get(headline, []))
            cells.append(f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]")
        table.add_row(*cells)
    console.print(table)
    if best is not None and headline:
        better = "lower" if lower_is_better(headline) else "higher"
        console.print(f"best trial by the mean of {headline} ({better} is better): {best.run_id}")
    _print_sensitivity(swept, console)


def _sensitivity(swept) -> tuple[list, str | None]:
    """(the sweep's LR-sensitivity rows, or why there are none to give)."""
    from learnscope.sweep import lr_sensitivity

    try:
        return lr_sensitivity(swept), None
    except LearnscopeError as error:
        return [], str(error)


def _print_sensitivity(swept, console: Console) -> None:
    from learnscope.stats import mean_ci

    rows, why = _sensitivity(swept)
    if why:
        console.print(f"LR sensitivity: not computed: {escape(why)}")
    if not rows:
        return
    labels = list(rows[0].group)
    arms = any(row.arm for row in rows)
    table = Table(*(escape(label) for label in labels), *(["arm"] if arms else []), "LR sensitivity mean [95% CI]",
                  "per seed", title=f"LR sensitivity of {rows[0].metric} over recipe.lr = {rows[0].rates}: the mean "
                  "of min(loss, loss at init) − the best loss")
    for row in rows:
        cells = [escape(json.dumps(row.group[label])) for label in labels] + ([row.arm or ""] if arms else [])
        if row.missing:
            cells += [f"waits on {len(row.missing)} trials", ""]
        else:
            mean, low, high = mean_ci(row.values)
            cells += [f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]", " ".join(fmt(v) for v in row.values)]
        table.add_row(*cells)
    console.print(table)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="an interrupted or failed run")],
    store: StoreOpt = None,
    plugin: PluginOpt = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="write the report at the end")] = True,
    as_json: JsonOpt = False,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="where to continue: the device the run trained on by default (bit for bit); cpu, auto, "
                         "cuda, cuda:N or mps")] = None,
    backend: Annotated[Optional[str], typer.Option(
        "--backend", help="a sweep: where its trials run now (the backend it was started with by default)")] = None,
    address: AddressOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Continue a stopped run from its last checkpoint, exactly as if never stopped."""
    from learnscope.runner import resume_run

    console = _console(as_json)
    progress = _progress(sys.stderr.isatty() or not as_json)
    st = _existing_store(store)
    run_id = st.resolve_id(run_id)
    if st.get_run(run_id).kind == "sweep":
        from learnscope.sweep import resume_sweep

        swept = resume_sweep(run_id, st, progress, device if device is not None else "recorded", backend, address,
                             workers)
        _conclude_sweep(swept, console, report, as_json)
        return
    if backend is not None or address is not None or workers is not None:
        raise LearnscopeError(f"--backend, --address and --workers apply to sweeps; '{run_id}' is a "
                              f"{st.get_run(run_id).kind} run")
    result = resume_run(run_id, st, progress, device if device is not None else "recorded")
    _conclude(result, result.record.name, console, report, as_json)


# ------------------------------------------------------------------ verify


@app.command()
def verify(
    name: Annotated[Optional[str], typer.Argument(help="a phenomenon name")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every phenomenon in the catalog")] = False,
    quick: QuickOpt = False,
    seeds: SeedsOpt = None,
    overrides: SetOpt = None,
    store: StoreOpt = None,
    plugin: PluginOpt = None,
    stored_run: Annotated[Optional[str], typer.Option("--run", help="re-check a stored phenomenon run instead")] = None,
    device: DeviceOpt = None,
) -> None:
    """Run phenomena and check their signatures; exit 0 iff every one holds."""
    from learnscope.runner import check_signature, run_phenomenon
    from learnscope.train.devices import resolve_device

    where = resolve_device(device or "cpu")  # a device not on this machine: one line, before any work

    console = _console(False)
    if stored_run is not None:
        st = _existing_store(store)
        stored_run = st.resolve_id(stored_run)
        verdict = check_signature(st, stored_run)
        record = st.get_run(stored_run)
        console.print(verdict.line(record.name))
        raise typer.Exit(0 if verdict.ok else 1)
    if all_ == (name is not None):
        raise LearnscopeError("give one phenomenon name or --all; phenomena: " + ", ".join(registry.phenomena.names()))
    names = registry.phenomena.names() if all_ else [name]
    for n in names:
        registry.phenomena.get(n, "phenomenon")
    progress = _progress(True)
    results = []
    for n in names:
        result = run_phenomenon(n, quick, seeds, overrides or (), store, None, progress, where)
        verdict = result.verdict
        results.append(verdict.ok)
        console.print(f"run {result.id}")
        console.print(verdict.line(n))
    if all_:
        console.print(f"verified all: {'PASS' if all(results) else 'FAIL'} ({sum(results)}/{len(results)} phenomena)")
    raise typer.Exit(0 if all(results) else 1)


# ------------------------------------------------------------------ sites


@app.command()
def sites(
    target: Annotated[str, typer.Argument(help="a phenomenon name or a spec file")],
    quick: QuickOpt = False,
    overrides: SetOpt = None,
    plugin: PluginOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every site of the model (what probes read and interventions edit) with its shape."""
    from learnscope.runner import phenomenon_arms
    from learnscope.spec import load_experiment

    if target in registry.phenomena:
        _, arms = phenomenon_arms(target, quick, overrides=overrides or ())
        experiments = {name: arm.experiment for name, arm in arms.items()}
    elif _is_spec_file(target):
        if quick:
            raise LearnscopeError("--quick applies to phenomena; for a spec file set its size with --set")
        experiments = {Path(target).stem: load_experiment(target, overrides or ())}
    else:
        raise _unknown_target(target)
    # arms that build the same model on the same task share one listing
    groups: dict[str, tuple[list[str], dict[str, tuple[tuple[int, ...], int | None]]]] = {}
    for name, experiment in experiments.items():
        key = json.dumps([experiment.task.model_dump(), experiment.model.model_dump()], sort_keys=True, default=str)
        if key not in groups:
            groups[key] = ([], _model_sites(experiment))
        groups[key][0].append(name)
    if as_json:
        print(json.dumps([{"arms": names, "sites": {site: {"shape": list(shape), "head_axis": axis}
                                                    for site, (shape, axis) in listed.items()}}
                          for names, listed in groups.values()]))
        return
    console = _console(False)
    for names, listed in groups.values():
        experiment = experiments[names[0]]
        console.print(f"[bold]{', '.join(names)}[/bold]: {experiment.model.registry_name} on "
                      f"{experiment.task.registry_name}; shapes per member and example")
        table = Table("site", "shape", "heads along")
        for site, (shape, axis) in listed.items():
            table.add_row(site, "[" + ", ".join(map(str, shape)) + "]", "" if axis is None else f"axis {axis}")
        console.print(table)


def _model_sites(experiment) -> dict[str, tuple[tuple[int, ...], int | None]]:
    """site -> (shape per member and example, head axis in that shape or None), from
    the model built for one seed and a dry forward pass over 2 blank examples."""
    import torch

    from learnscope.models.base import Model
    from learnscope.tasks.base import Task

    task, spec = experiment.task, experiment.model
    assert isinstance(task, Task) and isinstance(spec, Model)  # registered components are
    info = task.info()
    model = spec.build(info, experiment.seed_list[:1])
    dtype = torch.long if info.input_kind == "tokens" else torch.float32
    shapes = model.site_shapes(torch.zeros((1, 2, *info.input_shape), dtype=dtype))
    heads = {site: model.head_axis(site) for site in shapes}
    return {site: (shape, None if heads[site] is None else heads[site] - 2) for site, shape in shapes.items()}


# ------------------------------------------------------------------ show / runs


@app.command()
def show(run_id: Annotated[str, typer.Argument(help="a run id, a unique prefix of one, or latest")], store: StoreOpt = None,
    plugin: PluginOpt = None, as_json: JsonOpt = False):
    """A run's summary: per-seed final values, mean, std, 95% CI, signature; a sweep's trials."""
    from learnscope.runs import Run
    from learnscope.stats import CI_METHOD

    st = _existing_store(store)
    run_id = st.resolve_id(run_id)
    if st.get_run(run_id).kind == "sweep":
        from learnscope.sweep import Sweep

        swept = Sweep(st, run_id)
        rows = swept.trials()
        if as_json:
            sensitivity, why = _sensitivity(swept)
            print(json.dumps(_finite({"sweep_id": swept.id, "status": swept.status, "seeds": swept.record.seeds,
                                      "trials": [{"run_id": r.run_id, "values": r.values, "status": r.status,
                                                  "duration": r.duration, "final": r.final} for r in rows],
                                      "lr_sensitivity": [row.as_dict() for row in sensitivity],
                                      **({"lr_sensitivity_error": why} if why else {})}),
                             default=str))
            return
        _print_sweep(swept, rows, _console(False))
        return
    result = Run(st, run_id)
    if as_json:
        verdict = result.verdict
        summary = result.summary().to_dict(orient="records")
        print(json.dumps(_finite({"run_id": result.id, "name": result.record.name, "status": result.status,
                                  "reason": result.record.reason, "seeds": result.record.seeds, "summary": summary,
                                  "ci_method": CI_METHOD, "verdict": verdict.as_dict() if verdict else None}),
                         default=_json_default))
        return
    _print_summary(result, _console(False))


def _finite(value):
    """Non-finite floats become null: json.dumps would write NaN, which is not JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(type(value))


@app.command()
def runs(store: StoreOpt = None,
    plugin: PluginOpt = None, limit: Annotated[int, typer.Option(min=1)] = 20, as_json: JsonOpt = False):
    """Recent runs with their status."""
    st = _existing_store(store)
    records = st.list_runs(limit)
    trials = {r.id: _sweep_trials(st, r) for r in records if r.kind == "sweep"}
    if as_json:
        print(json.dumps([{"run_id": r.id, "name": r.name, "kind": r.kind, "status": r.status,
                           "reason": r.reason, "created": r.created,
                           **({"trials": [{"run_id": t.id, "values": values, "status": t.status,
                                           "duration": _duration(t)} for t, values in trials[r.id]]}
                              if r.id in trials else {})} for r in records], default=str))
        return
    import time

    table = Table("run id", "name", "kind", "status", "created", "reason")
    for r in records:
        table.add_row(r.id, r.name, r.kind, r.status, time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)),
                      r.reason or "")
        for t, values in trials.get(r.id, []):
            swept = " ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
            seconds = _duration(t)
            table.add_row(f"  └ {t.id}", escape(swept), t.kind, t.status,
                          f"took {seconds:.2f} s" if seconds is not None else "", t.reason or "")
    _console(False).print(table)


def _sweep_trials(st: Store, record) -> list:
    """A sweep's trial runs (those begun) with their swept values."""
    values = {t["run_id"]: t["values"] for t in record.spec.get("trials", [])}
    return [(child, values.get(child.id, {})) for child in st.children(record.id)]


def _duration(record) -> float | None:
    return None if record.finished is None or record.status == "running" else record.finished - record.created


# ------------------------------------------------------------------ compare

SPEC_DIFF_KEY = "_spec_diff"  # compare --json: beside the metric keys; no built-in metric name begins with "_"


@app.command()
def compare(
    run_a: Annotated[str, typer.Argument(help="run A, the baseline; or a sweep, alone: its trials compared")],
    run_b: Annotated[Optional[str], typer.Argument(help="run B: differences are B − A")] = None,
    metrics: Annotated[Optional[list[str]], typer.Option(
        "--metric", help="only this metric (repeatable): a name, in every paired arm, or ARM:name")] = None,
    baseline: Annotated[Optional[str], typer.Option(
        "--baseline", help="with a sweep: the trial the others are compared with (default: the best)")] = None,
    store: StoreOpt = None,
    plugin: PluginOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Two runs' final metrics paired by seed: B − A with its 95% CI, p and n; and how their specs differ.

    Per metric recorded in both: the mean over seeds of B − A, its 95%
    t-interval, the two-sided paired t-test's p-value, and n, the seeds
    paired. Seed s of A pairs with seed s of B; only seeds in both runs that
    diverged in neither are used. Two phenomenon runs pair arm by arm, each
    arm with the arm of the same name (shown as ARM:metric); two runs of one
    arm each (an experiment, a watched loop, or a phenomenon's arm, RUN.ARM)
    pair as they are.
    """
    from learnscope.compare import compare_runs
    from learnscope.runs import Run

    st = _existing_store(store)
    run_a = st.resolve_id(run_a)
    run_b = st.resolve_id(run_b) if run_b is not None else None
    if st.get_run(run_a).kind == "sweep":
        if run_b is not None:
            raise LearnscopeError(f"'{run_a}' is a sweep: compare it alone (its trials with the best or --baseline)")
        _compare_sweep(st, run_a, baseline, metrics or (), as_json)
        return
    if run_b is None:
        raise LearnscopeError("compare needs two runs, RUN_A RUN_B, or one sweep")
    if baseline is not None:
        raise LearnscopeError("--baseline applies to a sweep's trials; with two runs, A is the baseline")
    result = compare_runs(Run(st, run_a), Run(st, run_b), metrics or ())
    if as_json:
        payload: dict = {d.key: d.as_dict() for d in result.differences}
        if SPEC_DIFF_KEY in payload:  # a plugin's metric of that name: refuse rather than overwrite it
            raise LearnscopeError(f"metric '{SPEC_DIFF_KEY}' takes the key compare --json reserves; select others "
                                  "with --metric")
        payload[SPEC_DIFF_KEY] = result.spec_diff.as_dict()
        print(json.dumps(_finite(payload), default=str))
        return
    _print_comparison(result, _console(False))


def _compare_sweep(st: Store, sweep_id: str, baseline: str | None, metrics, as_json: bool) -> None:
    from learnscope.sweep import Sweep, compare_sweep

    chosen, ranked_by, comparisons = compare_sweep(Sweep(st, sweep_id), baseline, metrics)
    if as_json:
        print(json.dumps(_finite({"sweep_id": sweep_id, "baseline": chosen, "ranked_by": ranked_by,
                                  "trials": {c.b: {d.key: d.as_dict() for d in c.differences}
                                             for c in comparisons}}), default=str))
        return
    console = _console(False)
    why = f"the best trial by the mean of {ranked_by}" if ranked_by else "as named"
    console.print(f"[bold]sweep {sweep_id}[/bold]: every trial against {chosen} ({why})")
    for result in comparisons:
        _print_comparison(result, console)


def _print_comparison(result: Comparison, console: Console) -> None:
    from learnscope.stats import CI_DESCRIPTION

    console.print(f"[bold]B − A[/bold]  A {result.a}  B {result.b}  paired seeds {' '.join(map(str, result.seeds))}")
    for arm_a, arm_b in result.arms:
        if arm_a != arm_b:
            console.print(f"arms paired: A's {arm_a or '(the run)'} with B's {arm_b or '(the run)'}")
    if result.left_out:
        console.print("left out: " + ", ".join(f"seed {seed} ({why})" for seed, why in result.left_out.items()))
    multi_arm = any(d.arm for d in result.differences)
    table = Table(*(["arm"] if multi_arm else []), "metric", "A mean", "B mean", "difference [95% CI]", "p", "n")
    for d in result.differences:
        s = d.stats
        cells = [escape(d.metric), fmt(s.mean_a), fmt(s.mean_b), f"{fmt(s.mean_difference)} [{fmt(s.ci_low)}, {fmt(s.ci_high)}]",
                 fmt(s.p_value), str(s.n)]
        table.add_row(*([escape(d.arm)] if multi_arm else []), *cells)
    console.print(table)
    console.print(f"95% CI of the difference: {CI_DESCRIPTION}, sd that of the per-seed differences")
    for d in result.differences:
        if d.stats.note:
            console.print(f"{d.key}: {d.stats.note}")
    for side, keys in (("A", result.only_a), ("B", result.only_b)):
        if keys:
            console.print(f"only in {side}: {', '.join(keys)}")
    diff = result.spec_diff
    if not diff:
        console.print("specs: identical")
        return
    specs = Table("spec key", "A", "B", title="spec diff")
    shown = lambda value: escape(json.dumps(value, default=str))
    for key, (a, b) in diff.changed.items():
        specs.add_row(escape(key), shown(a), shown(b))
    for key, value in diff.only_a.items():
        specs.add_row(escape(key), shown(value), "(absent)")
    for key, value in diff.only_b.items():
        specs.add_row(escape(key), "(absent)", shown(value))
    console.print(specs)


# ------------------------------------------------------------------ report / export


@app.command()
def report(
    run_ids: Annotated[list[str], typer.Argument(help="one or more run ids")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="report directory")] = None,
    store: StoreOpt = None,
    plugin: PluginOpt = None,
):
    """Plots (PNG) and one offline HTML page for runs."""
    from learnscope.report import write_report

    st = _existing_store(store)
    run_ids = [st.resolve_id(run_id) for run_id in run_ids]
    sweeps = [run_id for run_id in run_ids if st.get_run(run_id).kind == "sweep"]
    if sweeps:
        if len(run_ids) > 1:
            raise LearnscopeError(f"'{sweeps[0]}' is a sweep; report it alone")
        from learnscope.sweep import Sweep
        from learnscope.sweep.report import write_sweep_report

        print(f"report: {write_sweep_report(Sweep(st, sweeps[0]), out)}")
        return
    print(f"report: {write_report(st, run_ids, out)}")


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="a run id, a unique prefix of one, or latest")],
    format: Annotated[str, typer.Option("--format", help="csv, parquet, tensorboard or mlflow")] = "csv",
    out: Annotated[Optional[Path], typer.Option(
        "-o", "--out", help="output file; a directory for tensorboard and mlflow (default RUN.csv, RUN-mlflow, ...); "
                            "missing parent directories are created")] = None,
    store: StoreOpt = None,
    plugin: PluginOpt = None,
):
    """Metric rows (run_id, seed, step, name, value) to CSV or Parquet; or the run, per arm and seed, with its
    spec, as TensorBoard event files or an MLflow store (the extras learnscope[tensorboard], learnscope[mlflow])."""
    from learnscope.store.export import export_metrics

    st = _existing_store(store)
    path, rows = export_metrics(st, st.resolve_id(run_id), format, out)
    print(f"wrote {rows} rows to {path}")


# ------------------------------------------------------------------ entry point


class _Stopped(Exception):
    """Ctrl-C, carried past Typer (which turns a KeyboardInterrupt into a bare exit code)."""

    def __init__(self, interrupt: KeyboardInterrupt):
        super().__init__(str(interrupt))
        self.interrupt = interrupt


def _carry_interrupts(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)  # Typer reads the options from the wrapped signature
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise _Stopped(exc) from None

    command.carries_interrupts = True  # type: ignore[attr-defined]
    return command


def main(argv: list[str] | None = None) -> int:
    for info in app.registered_commands:
        if info.callback is not None and not getattr(info.callback, "carries_interrupts", False):
            info.callback = _carry_interrupts(info.callback)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="learnscope", standalone_mode=False)
    except LearnscopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except _Stopped as stop:  # a run stopped by Ctrl-C says how to resume it
        interrupt = stop.interrupt
        print(f"interrupted: {interrupt}" if isinstance(interrupt, RunInterrupted) else "interrupted", file=sys.stderr)
        return 130
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
            return 0
        if ctx is not None and ctx.parent:
            hint = f" (see `learnscope {ctx.info_name} --help`)"
        elif ctx is not None and hasattr(ctx.command, "list_commands"):  # an unknown command
            hint = f"; commands: {', '.join(ctx.command.list_commands(ctx))}"
        else:
            hint = ""
        message = exc.format_message().rstrip(".") if hint.startswith(";") else exc.format_message()
        print(f"error: {message}{hint}".replace("\n", " "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


def _is_usage_error(exc: Exception) -> bool:
    """Click's usage errors (bad option, missing argument), whether click is
    Typer's dependency or vendored inside it."""
    return hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == 2


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
