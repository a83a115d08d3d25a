"""The memory an experiment needs, estimated before anything big is allocated,
and one refusal, in one line, for an experiment that cannot fit.

An ensemble holds S times what one seed holds, so the estimate builds the
experiment's trainer for its first seed alone and scales it to S seeds; it
never allocates the ensemble, and a model whose one seed is itself too big
is counted from its shapes on the meta device first, allocating nothing.
What is counted:

- held throughout: parameters (the live ones, the initial copy that
  relative weight change and unlearning objectives read, buffers),
  gradients, optimizer state (`state_slots` copies of the parameters),
  intervention state (its tensors when built, and `parameter_copies` more
  copies of the parameters that it grows), the data splits (built a seed at
  a time into place: nothing more while building);
- held at times, the largest of them counted, and a third again for the
  allocator's slack: a training pass (the saved activations of the pass
  plan at S seeds, as much again for their gradients in backward, the
  update's batch where it is gathered or joined, a seed group's gradient),
  a probe step (the peak of the tensors alive while the one seed is
  measured, times S: probes run every seed at once), writing a checkpoint
  (its serialized bytes, and half again while written).

The check runs in three stages, each a part of the next and cheaper, so
that a size far past memory is refused at once: the models' shapes, then
one seed's data, then the one-seed trainers. On a CUDA device checkpoints
are serialized on the host: that is checked against the host's memory, the
rest against the device's free memory. The estimate against a trainer's
tensors and a run's peak resident memory: tests/test_bad_input.py, "sizes
past memory".
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from learnscope.errors import LearnscopeError
from learnscope.optimizers import OPTIMIZERS
from learnscope.spec import Experiment
from learnscope.train.data import EnsembleData
from learnscope.train.trainer import Trainer, model_of, task_of

REDUCE = "reduce seeds, model widths or samples"
# part names as the refusal prints them
LABELS = {"parameters": "parameters", "gradients": "gradients", "optimizer": "optimizer state",
          "interventions": "intervention state", "data": "data", "training_pass": "a training pass",
          "probe_step": "a probe step", "checkpoint": "writing a checkpoint"}
HELD = ("parameters", "gradients", "optimizer", "interventions", "data")
MOMENTS = ("training_pass", "probe_step", "checkpoint")
UNLIMITED = 2**60  # a cgroup limit at least this large is no limit
T = TypeVar("T")


def too_big(what: str, detail: str) -> LearnscopeError:
    """The one refusal of work that cannot fit in memory, whether the estimate
    says so or an allocation fails anyway."""
    return LearnscopeError(f"{what} does not fit in memory: {detail}; {REDUCE}")


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes by part (see the module docstring): the first five held
    throughout, the other three at times only, the largest of which counts."""

    seeds: int = 0
    parameters: int = 0
    gradients: int = 0
    optimizer: int = 0
    interventions: int = 0
    data: int = 0
    training_pass: int = 0
    probe_step: int = 0
    checkpoint: int = 0

    def parts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "seeds"}

    def held(self) -> int:
        return sum(getattr(self, p) for p in HELD)

    def total(self) -> int:
        return self.held() + _with_slack(max(getattr(self, p) for p in MOMENTS))

    def on_device(self) -> int:
        """What a CUDA device holds: all but a checkpoint being serialized."""
        return self.held() + _with_slack(max(self.training_pass, self.probe_step))

    def on_host_beside_device(self) -> int:
        """What the host holds when training on a CUDA device: a checkpoint's tensors
        copied back, beside its serialized bytes."""
        return self.checkpoint * 5 // 3

    @staticmethod
    def together(needs: Iterable[MemoryNeed]) -> MemoryNeed:
        """Experiments whose trainers are held at once (a phenomenon's arms) and
        trained one after another: held parts add up, moments do not meet."""
        needs = list(needs)
        held = {p: sum(getattr(n, p) for n in needs) for p in HELD}
        moments = {p: max((getattr(n, p) for n in needs), default=0) for p in MOMENTS}
        return MemoryNeed(seeds=max((n.seeds for n in needs), default=0), **held, **moments)

    def largest_parts(self, count: int = 4) -> str:
        """'data 65.6 GiB, parameters 5.1 GiB, ...': the largest held parts and the largest moment."""
        parts = self.parts()
        shown = sorted([*HELD, max(MOMENTS, key=lambda p: parts[p])], key=lambda p: -parts[p])
        return ", ".join(f"{LABELS[p]} {size_text(parts[p])}" for p in shown[:count] if parts[p] > 0)


def _with_slack(moment: int) -> int:
    """A moment's bytes and the allocator's slack: blocks freed during it that the
    allocator keeps but cannot reuse for the next, larger tensors (measured: a third
    of a probe step's peak, the test of the peak resident memory of a run)."""
    return moment + moment // 3


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            break
        n /= 1024
    return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"


def seed_count(experiment: Experiment) -> int:
    """How many seeds, without building the list (a count of 10^8 would take seconds and gigabytes)."""
    seeds = experiment.seeds
    return seeds if isinstance(seeds, int) else len(seeds)


def one_seed(experiment: Experiment) -> Experiment:
    """The experiment for its first seed alone."""
    seeds = experiment.seeds
    return experiment.model_copy(update={"seeds": [0 if isinstance(seeds, int) else seeds[0]]})


# ---------------------------------------------------------------- what is available


def host_available() -> tuple[int, str] | None:
    """(bytes, where the figure comes from) of the host's memory available now,
    the least of the kernel's MemAvailable and the room under this process's
    cgroup limit; without /proc/meminfo, the physical memory (portable, and an
    upper bound, so nothing that fits is refused); None if nothing tells."""
    found = [room for room in (_meminfo(), _cgroup_room()) if room is not None]
    if not found:
        try:
            found.append((os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "physical memory"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def _meminfo() -> tuple[int, str] | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable"
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> tuple[int, str] | None:
    """The room under the cgroup's memory limit (v2, else v1); reclaimable page cache counts as room."""
    for limit_file, usage_file, inactive in (("memory.max", "memory.current", "inactive_file"),
                                             ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes",
                                              "total_inactive_file")):
        base = Path("/sys/fs/cgroup")
        try:
            text = (base / limit_file).read_text().strip()
            if text == "max" or int(text) >= UNLIMITED:
                continue
            used = int((base / usage_file).read_text())
            stat = dict(line.split() for line in (base / limit_file).with_name(
                "memory.stat").read_text().splitlines() if len(line.split()) == 2)
            return int(text) - used + int(stat.get(inactive, 0)), "room under the cgroup's memory limit"
        except (OSError, ValueError):
            continue
    return None


# ---------------------------------------------------------------- the estimate


def _bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind the tensors."""
    storages = {}
    for t in tensors:
        storage = t.untyped_storage()
        storages[(storage.device, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


def _weights(seeds: int, model: int, trainable: int, slots: int, state: int = 0) -> MemoryNeed:
    """The parts that follow from one seed's model (`model` bytes, `trainable` of them
    trained), its optimizer's state slots and its interventions' state."""
    return MemoryNeed(seeds=seeds, parameters=seeds * (model + trainable), gradients=seeds * trainable,
                      optimizer=seeds * slots * trainable, interventions=seeds * state,
                      checkpoint=seeds * (model * (1 + slots) + state) * 3 // 2)


def parameter_need(experiment: Experiment) -> MemoryNeed | None:
    """Parameters, gradients, optimizer state and a checkpoint, counted from the
    shapes of one seed's model built on the meta device (nothing allocated); None
    for a model that cannot be built there."""
    one = one_seed(experiment)
    try:
        with torch.device("meta"):
            model = model_of(one).build(task_of(one).info(), one.seed_list)
    except Exception:  # noqa: BLE001 - a model that reads real values while built (a torch-module's check
        return None  # of its fixed tensors) is counted by the one-seed trainer instead
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    everything = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return _weights(seed_count(experiment), everything, trainable, OPTIMIZERS[experiment.recipe.optimizer].state_slots)


def data_need(experiment: Experiment) -> int:
    """Bytes of the data splits, from one seed's data built alone."""
    one = one_seed(experiment)
    data = EnsembleData(task_of(one), one.seed_list)
    return seed_count(experiment) * _bytes(t for pair in data.splits.values() for t in pair)


def estimate(experiment: Experiment) -> MemoryNeed:
    """The memory of the experiment's S-seed trainer, from its trainer for one seed
    (on the CPU: sizes do not depend on the device)."""
    seeds = seed_count(experiment)
    trainer = Trainer(one_seed(experiment), "cpu")
    trainable = _bytes(trainer.params)
    state = sum(_bytes(iv.state_dict().values()) + iv.parameter_copies * trainable for iv in trainer.interventions)
    weights = _weights(seeds, _bytes([*trainer.model.parameters(), *trainer.model.buffers()]), trainable,
                       OPTIMIZERS[trainer.recipe.optimizer].state_slots, state)
    data = _bytes(t for pair in trainer.data.splits.values() for t in pair)
    minibatches = not trainer.sampler.full_batch
    if minibatches:  # they follow a permutation of the pool per seed
        data += trainer.sampler.largest_pool() * torch.empty((), dtype=torch.long).element_size()
    plan = trainer.pass_plan(seeds)
    activations = plan.seeds * plan.examples * trainer.activation_bytes
    example = (_bytes([trainer.train_x]) + _bytes([trainer.train_y])) / trainer.train_y.shape[1]
    # a minibatch is gathered (a full batch is a view of the data); interventions' examples join it in a copy
    copies = minibatches + any(iv.extra_examples for iv in trainer.interventions)
    batch = copies * seeds * trainer.update_examples * example
    group = plan.seeds * trainable if plan.seeds < seeds else 0  # a seed group's own gradient
    return replace(weights, data=seeds * data, training_pass=math.ceil(2 * activations + batch + group),
                   probe_step=seeds * probe_peak(trainer))


class _PeakBytes(TorchDispatchMode):
    """The peak of bytes held by the tensors ops create while it is active, each
    storage counted once however many views share it."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # TorchDispatchMode wraps a subclass's __torch_dispatch__ in torch._disable_dynamo,
        # whose first call imports torch._dynamo: 1.2-1.5 s of every run that probes, for a
        # mode that is never compiled (tests/test_cli_imports.py)
        return False

    def __init__(self):
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors alive on it]
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._hold(t, inputs)
        return out

    def _hold(self, t: torch.Tensor, inputs: set[int]) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        entry = self.live.get(key)
        if entry is None:
            if key == 0 or key in inputs:  # empty, or a view (or in-place result) of memory made before
                return
            entry = self.live[key] = [storage.nbytes(), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del self.live[key]
                self.current -= entry[0]


def probe_peak(trainer: Trainer) -> int:
    """Bytes a probe step of this (one-seed) trainer holds at its peak, beyond what it held before."""
    if not trainer.experiment.probes:
        return 0
    tracker = _PeakBytes()
    with tracker:
        trainer.measure()
    return tracker.peak


# ---------------------------------------------------------------- the check


def allocating(what: str, make: Callable[[], T]) -> T:
    """`make()`, an allocation that fails all the same (a size past any machine,
    one seed's data too big to build) refused like an estimate past memory."""
    try:
        return make()
    except (MemoryError, OverflowError) as exc:
        raise too_big(what, f"allocating it failed ({exc.__class__.__name__})") from None
    except RuntimeError as exc:
        if "allocate" not in str(exc):
            raise
        raise too_big(what, "allocating it failed (out of memory)") from None


def check_fits(experiments: Sequence[Experiment], device: torch.device | str, what: str = "the experiment") -> None:
    """Refuse, in one line, experiments whose trainers are held at once (a phenomenon's
    arms) that cannot fit in the memory available to `device` (the host's for the CPU
    and MPS's unified memory): from their models' shapes, then with one seed's data,
    then from their one-seed trainers."""
    device = torch.device(device)
    checks = _available(device)
    if not checks:
        return
    shapes = [parameter_need(e) or MemoryNeed(seeds=seed_count(e)) for e in experiments]
    _refuse_over(MemoryNeed.together(shapes), checks, what)
    with_data = [replace(need, data=allocating(what, partial(data_need, e))) for need, e in zip(shapes, experiments)]
    _refuse_over(MemoryNeed.together(with_data), checks, what)
    needs = [allocating(what, partial(estimate, experiment)) for experiment in experiments]
    _refuse_over(MemoryNeed.together(needs), checks, what)


Check = tuple[Callable[[MemoryNeed], int], int, str]  # (what the need takes of it, bytes available, source)


def _available(device: torch.device) -> list[Check]:
    host = host_available()
    if device.type != "cuda":
        return [(MemoryNeed.total, *host)] if host is not None else []
    free, _ = torch.cuda.mem_get_info(device)
    checks: list[Check] = [(MemoryNeed.on_device, free, f"free on {device}")]
    if host is not None:
        checks.append((MemoryNeed.on_host_beside_device, host[0], f"{host[1]} on the host"))
    return checks


def _refuse_over(need: MemoryNeed, checks: list[Check], what: str) -> None:
    for taken, available, source in checks:
        if taken(need) > available:
            raise too_big(what, f"it needs about {size_text(taken(need))} ({need.largest_parts()}) for "
                                f"{need.seeds:,} seeds, and {size_text(available)} is available ({source})")
