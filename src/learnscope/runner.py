"""Running experiments and phenomena into the store, and resuming them.

Everything that can refuse a run (spec, data, model, probes, room in the
store) is checked before the run is recorded, so bad input leaves no trace.
A top-level run is owned by the process running it (`RunStore.hold`); each arm
checkpoints every `recipe.checkpoint_every` steps, and `resume_run` carries
a stopped run on from its arms' last checkpoints: metric rows and events
recorded after a checkpoint are dropped and recorded again, identically.

`device` ("cpu" by default, "auto", "cuda", "mps") says where a run trains;
it is recorded as an event of the run, and `resume_run` continues on the
recorded device unless told otherwise (results are deterministic per device).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

import torch

from learnscope import faults, registry
from learnscope.catalog.base import Arm, Phenomenon, arm_table
from learnscope.errors import LearnscopeError, RunInterrupted, SpecError, one_of
from learnscope.optimizers import OPTIMIZERS
from learnscope.progress import TrainingProgress
from learnscope.provenance import ENVIRONMENT_EVENT, environment
from learnscope.results import Verdict, arms_data
from learnscope.runs import Run
from learnscope.spec import Experiment, apply_override, get_key
from learnscope.store.base import RunRecord, RunStore, run_id_for
from learnscope.store.checkpoints import read_checkpoint, write_checkpoint
from learnscope.store.sqlite import Store
from learnscope.train.devices import resolve_device
from learnscope.train.memory import allocating, check_fits
from learnscope.train.trainer import Trainer, probes_of

# Bytes a metric row takes in SQLite (row, B-tree share, name), and room for the WAL.
ROW_BYTES = 64
STORE_MARGIN_BYTES = 8 * 2**20
DIVERGED = "loss became NaN or Inf: the seed is frozen and left out of statistics and signatures"
ALL_DIVERGED = "every seed diverged"  # how the reason of a run that failed so begins


def open_store(store: RunStore | str | None) -> RunStore:
    """The store given, or the SQLite store at a directory (the default one for None)."""
    return store if isinstance(store, RunStore) else Store(store)


def _reporter(progress: TrainingProgress | bool) -> TrainingProgress:
    return progress if isinstance(progress, TrainingProgress) else TrainingProgress(enabled=bool(progress))


def _headline(experiment: Experiment, preferred: str | None, trainer: Trainer) -> str:
    if preferred:
        return preferred
    names = [n for probe in probes_of(experiment) for n in probe.names(trainer.info)]
    for candidate in ("accuracy/test", "loss/test"):
        if candidate in names:
            return candidate
    return names[0] if names else ""


Device = str | torch.device | None  # "cpu", "auto", "cuda", "cuda:N", "mps"; None: auto
DEVICE_EVENT = "device"  # an event of a top-level run: where it trained (from its start, or from a resume)


def build_trainer(experiment: Experiment, device: Device = "cpu") -> Trainer:
    """The trainer of an experiment; sizes no machine can hold are bad input,
    refused in one line like any other (`check_fits` refuses them before building;
    an allocation that fails even so is refused the same way)."""
    return allocating("the experiment", partial(Trainer, experiment, device))


def resolve_source(source: str, path: str, parent: str | None = None) -> str:
    """The run id of a run a spec reads at `path`, with "@ARM" read as an arm of `parent`."""
    if source.startswith("@"):
        if parent is None:
            raise LearnscopeError(f"{path}: '{source}' names an arm of a phenomenon; outside one, give a run id")
        return f"{parent}.{source[1:]}"
    return source


def start_from(store: RunStore, trainer: Trainer, parent: str | None = None) -> None:
    """Load the runs the trainer's experiment reads: the parameters it starts
    from (`init_from`) and its interventions' (a teacher), each a run's last
    checkpoint; "@ARM" is an arm of the phenomenon run `parent`."""
    for reference in trainer.experiment.runs_read():
        source = resolve_source(reference.source, reference.path, parent)
        record = store.get_run(source)
        if record.kind == "phenomenon":
            arms = ", ".join(f"{source}.{child.arm}" for child in store.children(source))
            raise LearnscopeError(f"{reference.path}: run '{source}' is a phenomenon; name one of its arms: {arms}")
        if record.kind != "experiment":
            raise LearnscopeError(f"{reference.path}: run '{source}' is a {record.kind} run, not an experiment")
        checkpoint = read_checkpoint(store, source)
        if checkpoint is None:
            raise LearnscopeError(f"{reference.path}: run '{source}' has no checkpoint to read (status "
                                  f"{record.status})")
        trainer.read_run(reference, Experiment.model_validate(record.spec), checkpoint.tensors,
                         checkpoint.meta["seeds"], source)


def needed_bytes(trainers: Sequence[Trainer]) -> int:
    """What runs of these trainers add to a store, about: every metric row, and
    two checkpoints (the previous one stays until the next is recorded)."""
    total = STORE_MARGIN_BYTES
    for trainer in trainers:
        names = [n for probe in probes_of(trainer.experiment) for n in probe.names(trainer.info)]
        total += trainer.probe_count() * len(names) * trainer.members * ROW_BYTES
        param_bytes = sum(p.numel() * p.element_size() for p in trainer.params)
        optimizer_slots = OPTIMIZERS[trainer.recipe.optimizer].state_slots
        total += 2 * param_bytes * (1 + optimizer_slots + len(trainer.interventions))
    return total


def _guarded(store: RunStore, run_id: str, work: Callable[[], str | None]) -> None:
    """Run `work`, leaving the run's status honest whatever happens; work that
    returns a reason ran to its end, and failed for that reason."""
    store.set_status(run_id, "running")
    try:
        failure = work()
    except KeyboardInterrupt:
        store.set_status(run_id, "interrupted", "interrupted by the user")
        top = store.get_run(run_id)
        if top.parent is None or store.get_run(top.parent).kind == "sweep":  # an arm's run says it of its phenomenon
            raise RunInterrupted(run_id, getattr(store, "dir", None)) from None
        raise
    except BaseException as exc:
        store.set_status(run_id, "failed", f"{exc.__class__.__name__}: {exc}")
        raise
    store.set_status(run_id, "failed" if failure else "finished", failure)


def _train(store: RunStore, run_id: str, trainer: Trainer, reporter: TrainingProgress, label: str,
           headline: str) -> None:
    """Train an arm from its trainer's current step to the end, recording
    metrics, divergence events and checkpoints."""
    seeds = trainer.seeds
    trainer.on_diverge = lambda seed, step: store.add_event(run_id, "diverged", {"reason": DIVERGED}, seed, step)
    probes = [(probe, probe.metric_names(trainer.info)) for probe in probes_of(trainer.experiment)]
    marked = {(e["kind"], e["seed"]) for e in store.events(run_id)}  # a probe's event is recorded once per seed
    with reporter.bar(label, trainer.recipe.steps, len(seeds), headline, start=trainer.step) as bar:

        def on_probe(step, metrics):
            host = {k: v.detach().cpu().tolist() for k, v in metrics.items()}
            store.write_metrics(run_id, step, seeds, host)
            for probe, names in probes:
                for event in probe.events({name: host[probe.labelled(name)] for name in names}):
                    if (event.kind, seeds[event.member]) not in marked:
                        marked.add((event.kind, seeds[event.member]))
                        store.add_event(run_id, event.kind, event.detail, seeds[event.member], step)
            bar.probe(step, host)

        def on_checkpoint(step):
            write_checkpoint(store, run_id, *trainer.state())

        trainer.run(on_probe=on_probe, on_step=bar.step, on_checkpoint=on_checkpoint)


def _train_experiment(store: RunStore, run_id: str, trainer: Trainer, reporter: TrainingProgress, label: str,
                      headline: str) -> str | None:
    """Train an experiment run to its end; one whose every seed diverged has
    no final values, and fails (its rows before are kept). A phenomenon's arm
    may diverge by design, as gradient ascent does: its signature judges it."""
    _train(store, run_id, trainer, reporter, label, headline)
    diverged = store.diverged(run_id)
    if trainer.seeds and len(diverged) == len(trainer.seeds):
        return (f"{ALL_DIVERGED} (the loss became NaN or Inf; the first at step {min(diverged.values())}): no "
                f"final values to report; lower recipe.lr or check the data")
    return None


def recorded_device(store: RunStore, run_id: str) -> str:
    """The device a run last trained on ("cpu" for runs recorded before devices were)."""
    events = store.events(run_id, DEVICE_EVENT)
    return str(events[-1]["detail"]["device"]) if events else "cpu"


def restored_trainer(store: RunStore, run_id: str, experiment: Experiment, parent: str | None = None,
                     device: Device = "cpu") -> Trainer:
    """A trainer at the run's last checkpoint (at step 0 without one), with
    what the run recorded after that step dropped. The checkpoint loads onto
    `device` whichever device wrote it."""
    trainer = build_trainer(experiment, device)
    start_from(store, trainer, parent)
    checkpoint = read_checkpoint(store, run_id)
    if checkpoint is not None:
        trainer.load_state(checkpoint.tensors, checkpoint.meta)
    store.discard_from(run_id, trainer.step)
    return trainer


def run_experiment(
    experiment: Experiment,
    store: RunStore | str | None = None,
    name: str | None = None,
    run_id: str | None = None,
    progress: TrainingProgress | bool = False,
    trainer: Trainer | None = None,
    device: Device = "cpu",
    parent: str | None = None,
) -> Run:
    """Train an experiment's seed ensemble on `device`, recording everything in
    the store (a given `trainer` keeps its own device). `parent`: the sweep the
    run is a trial of (its process holds the sweep too)."""
    name = name or experiment.task.registry_name
    run_id = run_id_for(run_id, name)
    store = open_store(store)
    if trainer is None:
        where = resolve_device(device)
        check_fits([experiment], where)
        trainer = build_trainer(experiment, where)
    start_from(store, trainer)
    store.check_room(needed_bytes([trainer]))
    with store.hold(run_id):
        store.create_run(run_id, name, experiment.to_dict(), trainer.seeds, parent=parent)
        store.add_event(run_id, DEVICE_EVENT, {"device": str(trainer.device)})
        store.add_event(run_id, ENVIRONMENT_EVENT, environment())
        headline = _headline(experiment, None, trainer)
        _guarded(store, run_id, lambda: _train_experiment(store, run_id, trainer, _reporter(progress), name, headline))
    return Run(store, run_id)


def phenomenon_arms(
    name: str, quick: bool = False, seeds: int | None = None, overrides: Sequence[str] = ()
) -> tuple[Phenomenon, dict[str, Arm]]:
    """The phenomenon and its arms with `--seeds` and `--set` applied: `key=value`
    to every arm, `ARM:key=value` to one. A global override of a key the arms
    hold different values of, or of one of a group of keys that move
    together, would break the comparison silently: it is refused."""
    phenomenon: Phenomenon = registry.phenomena.get(name, "phenomenon")()
    arms = arm_table(phenomenon.arms(quick), name)
    specs = {arm: a.experiment.to_dict() for arm, a in arms.items()}
    for item in overrides:
        target, key, _ = _split_override(item, arms, name)
        if target is None:
            _refuse_breaking(phenomenon, name, key, specs)
        for arm in [target] if target else arms:
            apply_override(specs[arm], item.split(":", 1)[1] if target else item)
    for arm in specs:
        if seeds is not None:
            specs[arm]["seeds"] = seeds
    built = {}
    for arm, a in arms.items():
        try:
            experiment = Experiment.model_validate(specs[arm])
        except SpecError as exc:
            raise SpecError(f"arm {arm}", str(exc)) from None
        built[arm] = Arm(arm, experiment, a.starts_from)
    return phenomenon, built


def _split_override(item: str, arms: dict[str, Arm], name: str) -> tuple[str | None, str, str]:
    """(arm or None, dotted key, value text) of `--set [ARM:]key=value`."""
    if "=" not in item:
        raise SpecError("--set", f"'{item}' is not of the form key=value or ARM:key=value (e.g. recipe.lr=3e-4)")
    head, value = item.split("=", 1)
    target, key = (head.split(":", 1) if ":" in head else (None, head))
    if target is not None and target not in arms:
        raise SpecError("--set", f"'{target}' is not an arm of {name}; {one_of(target, arms)}")
    return target, key.strip(), value


def _refuse_breaking(phenomenon: Phenomenon, name: str, key: str, specs: dict[str, dict]) -> None:
    """Refuse a global `--set key` that would silently break the phenomenon's arms."""
    prefix = key + "."
    for fixed in phenomenon.fixed:
        if fixed == key or fixed.startswith(prefix) or key.startswith(fixed + "."):
            raise SpecError("--set", f"{key}: the arms of {name} are built around {fixed} "
                            f"({', '.join(specs)}); it cannot be changed by an override")
    for group in phenomenon.moves_together:
        hit = next((k for k in group if k == key or k.startswith(prefix) or key.startswith(k + ".")), None)
        if hit is not None:
            partners = ", ".join(k for k in group if k != hit)
            raise SpecError("--set", f"{key}: in {name} it moves together with {partners}; set them per arm "
                            f"with --set ARM:{key}=VALUE (arms: {', '.join(specs)})")
    missing = object()
    values = {arm: get_key(spec, key, missing) for arm, spec in specs.items()}
    if len(specs) > 1 and len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
        shown = ", ".join(f"{arm}: {'(none)' if v is missing else json.dumps(v, default=str)}"
                          for arm, v in values.items())
        raise SpecError("--set", f"{key}: the arms of {name} differ in it ({_clip(shown)}); one value for all "
                        f"would erase that difference; set it per arm with --set ARM:{key}=VALUE")


def _clip(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_phenomenon(
    name: str,
    quick: bool = False,
    seeds: int | None = None,
    overrides: Sequence[str] = (),
    store: RunStore | str | None = None,
    run_id: str | None = None,
    progress: TrainingProgress | bool = False,
    device: Device = "cpu",
    parent: str | None = None,
) -> Run:
    """Run every arm of a phenomenon on `device`, then check its signature;
    the verdict is stored as an event of the parent run. `parent`: the sweep
    the run is a trial of."""
    run_id = run_id_for(run_id, name)
    store = open_store(store)
    device = resolve_device(device)
    _, arms = phenomenon_arms(name, quick, seeds, overrides)
    check_fits([a.experiment for a in arms.values()], device, _arms_held(name, arms))
    # refuse bad input first; each trainer is of the experiment as its arm runs (from `@ARM`, not a fresh start)
    trainers = {arm: build_trainer(a.stored_experiment(), device) for arm, a in arms.items()}
    store.check_room(needed_bytes(list(trainers.values())))
    first = next(iter(arms.values())).experiment
    spec = {"phenomenon": name, "quick": quick, "seeds": seeds, "overrides": list(overrides),
            "arms": {arm: a.stored_spec() for arm, a in arms.items()}}
    with store.hold(run_id):
        store.create_run(run_id, name, spec, first.seed_list, kind="phenomenon", parent=parent)
        store.add_event(run_id, DEVICE_EVENT, {"device": str(device)})
        store.add_event(run_id, ENVIRONMENT_EVENT, environment())
        _guarded(store, run_id, lambda: _complete_phenomenon(store, run_id, arms, trainers, _reporter(progress),
                                                             device))
    return Run(store, run_id)


def _arms_held(name: str, arms: dict[str, Arm]) -> str:
    """A phenomenon's arms, as a refusal for memory names them: their trainers are held at once."""
    return f"phenomenon {name} ({len(arms)} arm{'s' * (len(arms) != 1)}, held together)"


def stored_arms(record: RunRecord) -> dict[str, Arm]:
    """A stored phenomenon run's arms, read back as validated Experiments."""
    return {arm: Arm.from_stored(arm, spec) for arm, spec in record.spec["arms"].items()}


def _complete_phenomenon(store: RunStore, run_id: str, arms: dict[str, Arm], trainers: dict[str, Trainer],
                         reporter: TrainingProgress, device: torch.device) -> None:
    """Run the arms not finished yet (resuming one that was stopped), then
    check the signature. `trainers` are fresh trainers of arms not begun."""
    record = store.get_run(run_id)
    phenomenon: Phenomenon = registry.phenomena.get(record.name, "phenomenon")()
    children = {child.arm: child for child in store.children(run_id)}
    for arm, a in arms.items():
        child = children.get(arm)
        if child is not None and child.status == "finished":
            continue
        arm_id = f"{run_id}.{arm}"
        spec = a.stored_spec()
        experiment = a.stored_experiment()
        if child is None:
            trainer = trainers.pop(arm) if arm in trainers else build_trainer(experiment, device)
            start_from(store, trainer, run_id)  # an earlier arm has finished by now
            store.create_run(arm_id, record.name, spec, trainer.seeds, parent=run_id, arm=arm)
        else:
            trainer = restored_trainer(store, arm_id, experiment, run_id, device)
        label = f"{record.name}[{arm}]"
        _guarded(store, arm_id, partial(_train, store, arm_id, trainer, reporter, label, phenomenon.headline))
        faults.point("arm-finished")
    store.add_event(run_id, "signature", check_signature(store, run_id).as_dict())


def resume_run(run_id: str, store: RunStore | str | None = None, progress: TrainingProgress | bool = False,
               device: Device | Literal["recorded"] = "recorded", within: str | None = None) -> Run:
    """Carry a stopped (interrupted or failed) run on from its last checkpoints,
    on the device it trained on ("recorded"; bit for bit) or on another one
    (the checkpoints load there; the rest of the run then has that device's digits).
    `within`: the sweep resuming the run, one of its trials."""
    store = open_store(store)
    record = store.get_run(run_id)
    if record.parent is not None and record.parent != within:
        what = "a trial of the sweep" if store.get_run(record.parent).kind == "sweep" else "an arm of"
        raise LearnscopeError(f"run '{run_id}' is {what} '{record.parent}'; resume '{record.parent}'")
    if record.status == "finished":
        raise LearnscopeError(f"run '{run_id}' already finished; there is nothing to resume")
    if record.kind == "sweep":
        raise LearnscopeError(f"run '{run_id}' is a sweep; `learnscope resume {run_id}` resumes its trials")
    if record.kind not in ("experiment", "phenomenon"):
        raise LearnscopeError(f"run '{run_id}' was recorded by ls.watch in its own training loop "
                              f"(kind {record.kind}); only runs learnscope trains can be resumed")
    if device == "recorded":
        trained_on = recorded_device(store, run_id)
        try:
            device = resolve_device(trained_on)
        except LearnscopeError as exc:
            raise LearnscopeError(f"run '{run_id}' trained on {trained_on}, which is not here ({exc}); pass "
                                  f"--device (device=) to resume it on another device") from None
    else:
        device = resolve_device(device)
    reporter = _reporter(progress)
    if record.kind == "phenomenon":
        done = {child.arm for child in store.children(run_id) if child.status == "finished"}
        left = {arm: a for arm, a in stored_arms(record).items() if arm not in done}
        check_fits([a.experiment for a in left.values()], device, _arms_held(record.name, left))
    else:
        check_fits([Experiment.model_validate(record.spec)], device)
    with store.hold(run_id):
        store.add_event(run_id, DEVICE_EVENT, {"device": str(device)})
        work: Callable[[], str | None]
        if record.kind == "phenomenon":
            work = lambda: _complete_phenomenon(store, run_id, stored_arms(record), {}, reporter, device)
        else:
            experiment = Experiment.model_validate(record.spec)
            trainer = restored_trainer(store, run_id, experiment, device=device)
            headline = _headline(experiment, None, trainer)
            work = lambda: _train_experiment(store, run_id, trainer, reporter, record.name, headline)
        _guarded(store, run_id, work)
    return Run(store, run_id)


def check_signature(store: RunStore, run_id: str) -> Verdict:
    """Re-check a stored phenomenon run's signature from its stored metrics;
    seeds that diverged are left out."""
    record = store.get_run(run_id)
    if record.kind != "phenomenon":
        what = "a plain experiment" if record.kind == "experiment" else f"a {record.kind} run"
        raise LearnscopeError(f"run '{run_id}' is {what}; only phenomenon runs have a signature")
    phenomenon: Phenomenon = registry.phenomena.get(record.name, "phenomenon")()
    arms = arms_data(store, store.children(run_id), phenomenon.keeps_diverged)
    verdict = phenomenon.check(arms)
    diverged = {seed for arm in arms.values() for seed in arm.diverged}
    if not verdict.seeds and diverged and not phenomenon.keeps_diverged:
        verdict.no_seeds = (f"every seed diverged in some arm (seeds {sorted(diverged)}: the loss became NaN or Inf; "
                            f"a seed that diverges in one arm leaves every arm)")
    return verdict
