"""Running experiments and phenomena into the store."""

from __future__ import annotations

from collections.abc import Sequence

from learnscope import registry
from learnscope.catalog.base import ArmData, Phenomenon, Verdict
from learnscope.errors import LearnscopeError
from learnscope.progress import TrainingProgress
from learnscope.runs import Run
from learnscope.spec import Experiment
from learnscope.store.sqlite import Store, new_run_id
from learnscope.train.trainer import Trainer


def open_store(store: Store | str | None) -> Store:
    return store if isinstance(store, Store) else Store(store)


def _headline(experiment: Experiment, preferred: str | None, trainer: Trainer) -> str:
    if preferred:
        return preferred
    names = [n for probe in experiment.probes for n in probe.metric_names(trainer.info)]
    for candidate in ("accuracy/test", "loss/test"):
        if candidate in names:
            return candidate
    return names[0] if names else ""


def run_experiment(
    experiment: Experiment,
    store: Store | str | None = None,
    name: str | None = None,
    run_id: str | None = None,
    parent: str | None = None,
    arm: str | None = None,
    progress: TrainingProgress | bool = False,
    headline: str | None = None,
    trainer: Trainer | None = None,
) -> Run:
    """Train an experiment's seed ensemble, recording everything in the store.

    The trainer is built (data, model, every check) before the run is
    recorded, so a spec that cannot run leaves no trace."""
    store = open_store(store)
    reporter = progress if isinstance(progress, TrainingProgress) else TrainingProgress(enabled=bool(progress))
    trainer = trainer or Trainer(experiment)
    name = name or experiment.task.registry_name
    run_id = run_id or new_run_id(name)
    store.create_run(run_id, name, experiment.to_dict(), trainer.seeds, parent=parent, arm=arm)
    seeds = trainer.seeds
    label = f"{name}[{arm}]" if arm else name
    with reporter.bar(label, experiment.recipe.steps, len(seeds), _headline(experiment, headline, trainer)) as bar:

        def on_probe(step, metrics):
            host = {k: v.detach().cpu().tolist() for k, v in metrics.items()}
            store.write_metrics(run_id, step, seeds, host)
            bar.probe(step, host)

        _guarded(store, run_id, lambda: trainer.run(on_probe=on_probe, on_step=bar.step))
    return Run(store, run_id)


def _guarded(store: Store, run_id: str, work) -> None:
    """Run `work`, leaving the run's status honest whatever happens."""
    try:
        work()
    except KeyboardInterrupt:
        store.set_status(run_id, "interrupted", "interrupted by the user")
        raise
    except BaseException as exc:
        store.set_status(run_id, "failed", f"{exc.__class__.__name__}: {exc}")
        raise
    store.set_status(run_id, "finished")


def phenomenon_arms(
    name: str, quick: bool = False, seeds: int | None = None, overrides: Sequence[str] = ()
) -> tuple[Phenomenon, dict[str, Experiment]]:
    """The phenomenon and its arms with `--seeds`/`--set` applied to every arm."""
    phenomenon: Phenomenon = registry.phenomena.get(name, "phenomenon")()
    arms = {arm: exp.with_overrides(overrides, seeds) for arm, exp in phenomenon.arms(quick).items()}
    return phenomenon, arms


def run_phenomenon(
    name: str,
    quick: bool = False,
    seeds: int | None = None,
    overrides: Sequence[str] = (),
    store: Store | str | None = None,
    run_id: str | None = None,
    progress: TrainingProgress | bool = False,
) -> Run:
    """Run every arm of a phenomenon, then check its signature; the verdict
    is stored as an event of the parent run."""
    store = open_store(store)
    phenomenon, arms = phenomenon_arms(name, quick, seeds, overrides)
    trainers = {arm: Trainer(exp) for arm, exp in arms.items()}  # refuse bad input before recording anything
    run_id = run_id or new_run_id(name)
    first = next(iter(arms.values()))
    spec = {"phenomenon": name, "quick": quick, "arms": {a: e.to_dict() for a, e in arms.items()}}
    store.create_run(run_id, name, spec, first.seed_list, kind="phenomenon")

    def work():
        for arm, exp in arms.items():
            run_experiment(exp, store, name, f"{run_id}.{arm}", parent=run_id, arm=arm, progress=progress,
                           headline=phenomenon.headline, trainer=trainers.pop(arm))
        verdict = check_signature(store, run_id)
        store.add_event(run_id, "signature", verdict.as_dict())

    _guarded(store, run_id, work)
    return Run(store, run_id)


def check_signature(store: Store, run_id: str) -> Verdict:
    """Re-check a stored phenomenon run's signature from its stored metrics."""
    record = store.get_run(run_id)
    if record.kind != "phenomenon":
        raise LearnscopeError(f"run '{run_id}' is a plain experiment; only phenomenon runs have a signature")
    phenomenon: Phenomenon = registry.phenomena.get(record.name, "phenomenon")()
    children = store.children(run_id)
    arms = {child.arm: ArmData(child, store.metrics(child.id)) for child in children}
    return phenomenon.check(arms)
