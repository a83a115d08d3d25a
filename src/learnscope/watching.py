"""Probes in your own training loop, on any device.

    with ls.watch(models, data={"train": (x, y), "test": (x, y)}, probes=["accuracy"],
                  store="learnscope-runs", name="my-mlp", every=50) as w:
        for step in range(1, steps + 1):
            ...                       # your own update of every model
            w.step(step)              # probes when step % every == 0

`models` is one `nn.Module` or a list of them, the seeds of an ensemble:
the same architecture, each its own parameters. The probes are learnscope's
own (`learnscope list` of the components; the README's table), measured
by the same code as in a learnscope run: a seed ensemble adapter runs each
module on its seed's slice of the data and stacks the results, and a probe
that reads a site (`{name: effective_rank, site: fc1}`) reads the output of
that named submodule through a forward hook (`penultimate` is the input of
the last `nn.Linear` with one output per class, `logits` the module's
output). What the task is comes from the data and one forward pass:
classification when the targets are integers (one per example, or one per
position for a sequence), regression when they are floats; `output_dim` is
the outputs' last axis.

The metrics land in the store as a run of kind `watch`, with an honest
status: `running` while the loop runs, `finished` when the watch closes
(after a last probe at the last step seen, unless that one was probed),
`failed` or `interrupted` when the with-block ends in an exception, as for
any run; `learnscope runs`, `show`, `report` and `export` read it.
Probing puts the modules in eval mode and puts every submodule back as it
was; it never changes parameters or gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError
from learnscope.losses import IGNORE, example_losses
from learnscope.models.base import EnsembleModel, Sites
from learnscope.models.trainer_view import SamplerView
from learnscope.probes.base import Needs, Probe, ProbeContext
from learnscope.runner import STORE_MARGIN_BYTES, open_store
from learnscope.runs import Run
from learnscope.seeding import generator
from learnscope.spec import Experiment, ProbeSpec, Recipe, resolve_component
from learnscope.store.base import run_id_for
from learnscope.store.sqlite import WATCH, Store
from learnscope.tasks.base import Block, TaskInfo
from learnscope.train.data import gather

if TYPE_CHECKING:
    from learnscope.stacked_optim import StackedOptimizer

Pair = tuple[Any, Any]
SplitData = Pair | Sequence[Pair]  # (x, y) shared by every seed, or one (x, y) per seed


class _Data:
    """The watched splits, stacked on the seed axis (a view of shared data: no copy)."""

    def __init__(self, info: TaskInfo, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]):
        self._info = info
        self._splits = splits

    @property
    def info(self) -> TaskInfo:
        return self._info

    @property
    def splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return self._splits

    def size(self, split: str) -> int:
        return self._splits[split][1].shape[1]

    def parts(self, split: str) -> tuple[str, ...]:
        return ()

    def identities(self, split: str) -> torch.Tensor:
        if self._info.input_kind != "tokens":
            raise LearnscopeError("watch: vector inputs carry no position identities")
        return self._splits[split][0]


def _output_tensor(out: Any) -> torch.Tensor:
    """A module's outputs as a tensor [B, out] (or [B, T, out]): a bare tensor, or
    the `logits` of an output object (Hugging Face models); [B] reads as [B, 1]."""
    logits = getattr(out, "logits", None)
    if not isinstance(out, torch.Tensor) and isinstance(logits, torch.Tensor):
        out = logits
    if not isinstance(out, torch.Tensor):
        raise LearnscopeError(f"watch: the model's forward must return a tensor of outputs (or an object with "
                              f".logits); got {type(out).__name__}")
    return out.unsqueeze(-1) if out.dim() == 1 else out


def _head_of(net: nn.Module, output_dim: int) -> str | None:
    """The name of the classifier whose input is the `penultimate` site: the last
    nn.Linear (in the order the module declares them) with one output per class."""
    heads = [name for name, m in net.named_modules() if isinstance(m, nn.Linear) and m.out_features == output_dim]
    return heads[-1] if heads else None


class WatchedEnsemble(EnsembleModel):
    """The user's modules as one seed ensemble: x [S, B, ...] -> out [S, B, output_dim],
    member k running on x[k]. Sites are the modules' named submodules (their
    outputs), `penultimate` (the head's input) and `logits` (the output), read and
    edited through forward hooks. An edit sees the seed axis first, as in a
    learnscope model, and is applied seed by seed: row k of what it returns must
    depend on row k of its input alone (as any per-seed edit does)."""

    def __init__(self, nets: Sequence[nn.Module], output_dim: int):
        super().__init__()
        self.nets = list(nets)  # a plain list: the user's modules stay theirs (not registered here)
        self.members = len(self.nets)
        self.output_dim = output_dim
        self.head_name = _head_of(self.nets[0], output_dim)
        self._saved_modes: list[tuple[nn.Module, bool]] | None = None

    def site_names(self) -> list[str]:
        names = [name for name, _ in self.nets[0].named_modules() if name]
        return names + (["penultimate"] if self.head_name is not None else []) + ["logits"]

    def readout(self) -> torch.Tensor:
        if self.head_name is None:
            raise LearnscopeError(f"watch: the model has no nn.Linear with {self.output_dim} outputs to read the "
                                  "classifier from")
        heads = [net.get_submodule(self.head_name) for net in self.nets]
        return torch.stack([head.weight for head in heads if isinstance(head, nn.Linear)])

    def train(self, mode: bool = True) -> WatchedEnsemble:
        """eval() remembers every submodule's mode; train() after it puts them back."""
        if not mode:
            if self._saved_modes is None:
                self._saved_modes = [(m, m.training) for net in self.nets for m in net.modules()]
            for net in self.nets:
                net.eval()
        elif self._saved_modes is not None:
            for m, training in self._saved_modes:
                m.training = training
            self._saved_modes = None
        else:
            for net in self.nets:
                net.train()
        self.training = mode
        return self

    def forward(self, x: torch.Tensor, sites: Sites | None = None) -> torch.Tensor:
        outs = []
        read: dict[str, dict[int, torch.Tensor]] = {}
        for k, net in enumerate(self.nets):
            handles = []
            if sites is not None:
                for name, module in net.named_modules():
                    if name and sites.touches(name):
                        handles.append(module.register_forward_hook(partial(self._site_hook, sites, name, k, read)))
                if self.head_name is not None and sites.touches("penultimate"):
                    head = net.get_submodule(self.head_name)
                    handles.append(head.register_forward_pre_hook(partial(self._head_hook, sites, k, read)))
            try:
                out = _output_tensor(net(x[k]))
                if sites is not None and sites.touches("logits"):
                    out = self._through(sites, "logits", out, k, read)
            finally:
                for handle in handles:
                    handle.remove()
            outs.append(out)
        if sites is not None:
            for site, rows in read.items():
                missing = [k for k in range(self.members) if k not in rows]
                if missing:
                    raise LearnscopeError(f"watch: site '{site}' was not reached by seed(s) {missing} in this pass")
                sites.acts[site] = torch.stack([rows[k] for k in range(self.members)])
        return torch.stack(outs)

    def _through(self, sites: Sites, site: str, value: Any, k: int, read: dict[str, dict[int, torch.Tensor]]
                 ) -> torch.Tensor:
        """Pass member k's activation through `sites` with the seed axis first
        (every row a view of it), keeping row k of the result and of what it records."""
        if not isinstance(value, torch.Tensor):
            raise LearnscopeError(f"watch: site '{site}' gives a {type(value).__name__}, not a tensor; "
                                  "choose a submodule that outputs one tensor")
        out = sites(site, value.unsqueeze(0).expand(self.members, *value.shape))
        if site in sites.acts:
            read.setdefault(site, {})[k] = sites.acts[site][k]
        return out[k]

    def _site_hook(self, sites: Sites, site: str, k: int, read: dict, module: nn.Module, args: Any, output: Any
                   ) -> torch.Tensor:
        return self._through(sites, site, output, k, read)

    def _head_hook(self, sites: Sites, k: int, read: dict, module: nn.Module, args: tuple) -> tuple:
        return (self._through(sites, "penultimate", args[0], k, read), *args[1:])


class WatchedLoop:
    """What a probe may read (models.trainer_view.TrainerView) of a loop that
    learnscope does not run: the data, the ensemble, parameters stacked per
    name (now and when the watch began), seeds, step."""

    def __init__(self, model: WatchedEnsemble, info: TaskInfo, data: _Data, seeds: list[int]):
        self._model = model
        self._info = info
        self._data = data
        self._seeds = seeds
        self._names = [name for name, _ in model.nets[0].named_parameters()]
        self._initial = [p.detach().clone() for p in self._stacked()]
        self._step = 0
        self._params: list[nn.Parameter] | None = None

    def begin(self, step: int) -> None:
        """A probe step begins: the parameters are read afresh (once for all probes)."""
        self._step = step
        self._params = None

    def end(self) -> None:
        """A probe step ends: its copy of the parameters is let go."""
        self._params = None

    def _stacked(self) -> list[nn.Parameter]:
        per_member = [dict(net.named_parameters()) for net in self._model.nets]
        return [nn.Parameter(torch.stack([params[name].detach() for params in per_member]), requires_grad=False)
                for name in self._names]

    def _no(self, what: str) -> LearnscopeError:
        return LearnscopeError(f"watch: a probe read the {what}; a loop that learnscope does not run has none")

    @property
    def experiment(self) -> Experiment:
        raise self._no("experiment spec")

    @property
    def recipe(self) -> Recipe:
        raise self._no("recipe")

    @property
    def sampler(self) -> SamplerView:
        raise self._no("batch sampler")

    @property
    def optimizer(self) -> StackedOptimizer:
        raise self._no("optimizer")

    @property
    def seeds(self) -> list[int]:
        return self._seeds

    @property
    def info(self) -> TaskInfo:
        return self._info

    @property
    def data(self) -> _Data:
        return self._data

    @property
    def model(self) -> EnsembleModel:
        return self._model

    @property
    def params(self) -> list[nn.Parameter]:
        if self._params is None:
            self._params = self._stacked()
        return self._params

    @property
    def initial_params(self) -> list[torch.Tensor]:
        return self._initial

    @property
    def blocks(self) -> list[Block] | None:
        return None

    @property
    def train_x(self) -> torch.Tensor:
        return self._train()[0]

    @property
    def train_y(self) -> torch.Tensor:
        return self._train()[1]

    def _train(self) -> tuple[torch.Tensor, torch.Tensor]:
        splits = self._data.splits
        return splits["train"] if "train" in splits else next(iter(splits.values()))

    @property
    def step(self) -> int:
        return self._step

    @property
    def members(self) -> int:
        return len(self._seeds)

    def loss_per_seed(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return example_losses(self._info, outputs, targets).mean(1)

    def sample(self, split: str, size: int, stream: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self._data.splits[split]
        n = y.shape[1]
        idx = torch.stack([torch.randperm(n, generator=generator(seed, stream, self._step))[:size]
                           for seed in self._seeds])
        x, y = gather(idx, x, y)
        return x, y

    def site_edits(self, members: slice, examples: slice) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """No intervention edits a watched loop's sites."""
        return {}

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """The task-loss gradient of every seed on its batch, stacked per parameter name."""
        nets = self._model.nets
        leaves = [[dict(net.named_parameters())[name] for name in self._names] for net in nets]
        with torch.enable_grad():
            loss = self.loss_per_seed(self._model(x), y).sum()
            flat = torch.autograd.grad(loss, [p for ps in leaves for p in ps], allow_unused=True)
        grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(flat, (p for ps in leaves for p in ps))]
        count = len(self._names)
        return [torch.stack([grads[k * count + i] for k in range(len(nets))]) for i in range(count)]


def _members(models: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    if isinstance(models, nn.Module) and not isinstance(models, nn.ModuleList):
        nets = [models]
    elif isinstance(models, (Sequence, nn.ModuleList)) and not isinstance(models, str):
        nets = list(models)
    else:
        raise LearnscopeError(f"watch: models must be an nn.Module or a list of them (the seeds); "
                              f"got {type(models).__name__}")
    if not nets:
        raise LearnscopeError("watch: models is empty; give one nn.Module or a list of them (the seeds)")
    for k, net in enumerate(nets):
        if not isinstance(net, nn.Module):
            raise LearnscopeError(f"watch: models[{k}] is a {type(net).__name__}, not an nn.Module")
    first = [(name, tuple(p.shape), p.dtype) for name, p in nets[0].named_parameters()]
    for k, net in enumerate(nets[1:], 1):
        params = [(name, tuple(p.shape), p.dtype) for name, p in net.named_parameters()]
        if type(net) is not type(nets[0]) or params != first:
            if type(net) is not type(nets[0]):
                diff = f"{type(nets[0]).__name__} vs {type(net).__name__}"
            else:
                unlike = [f"{a} vs {b}" for a, b in zip(first, params) if a != b]
                diff = unlike[0] if unlike else f"{len(first)} vs {len(params)} parameters"
            raise LearnscopeError(f"watch: models[{k}] has another architecture than models[0] ({diff}); the seeds "
                                  "of an ensemble share one")
    if len({id(net) for net in nets}) != len(nets):
        raise LearnscopeError("watch: the same module appears twice in models; each seed needs its own")
    devices = {p.device for net in nets for p in net.parameters()} | {b.device for net in nets for b in net.buffers()}
    if len(devices) > 1:
        raise LearnscopeError(f"watch: the models' parameters lie on several devices ({', '.join(map(str, devices))}); "
                              "put every model on one")
    return nets


def _tensor(value: Any, what: str, device: torch.device) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise LearnscopeError(f"watch: {what} is not an array or tensor ({type(value).__name__}: {exc})") from None
    if tensor.dim() == 0:
        raise LearnscopeError(f"watch: {what} is a scalar; it needs one row per example")
    return tensor.to(device)


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and not isinstance(value[0], (tuple, list))


def _split(name: str, value: Any, members: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as [S, N, ...] inputs and targets: (x, y) shared by every seed (a
    view, no copy) or a list of one (x, y) per seed (stacked)."""
    if _is_pair(value):
        x, y = (_tensor(v, f"data['{name}'][{i}]", device) for i, v in enumerate(value))
        pairs = [(x, y)]
    elif isinstance(value, (tuple, list)) and all(_is_pair(v) for v in value):
        if len(value) != members:
            raise LearnscopeError(f"watch: data['{name}'] holds {len(value)} (x, y) pairs for {members} models; "
                                  "give one (x, y) for all or one per model")
        pairs = [(_tensor(x, f"data['{name}'][{k}][0]", device), _tensor(y, f"data['{name}'][{k}][1]", device))
                 for k, (x, y) in enumerate(value)]
    else:
        raise LearnscopeError(f"watch: data['{name}'] must be a pair (x, y), or a list of one (x, y) per model")
    for k, (x, y) in enumerate(pairs):
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise LearnscopeError(f"watch: data['{name}']" + (f"[{k}]" if len(pairs) > 1 else "") +
                                  f" has {x.shape[0]} inputs and {y.shape[0]} targets; they need the same, "
                                  "non-zero number of examples")
        if (x.shape, y.shape, x.dtype, y.dtype) != (pairs[0][0].shape, pairs[0][1].shape, pairs[0][0].dtype,
                                                    pairs[0][1].dtype):
            raise LearnscopeError(f"watch: data['{name}'][{k}] differs in shape or dtype from data['{name}'][0]; "
                                  "the seeds' splits are stacked, so they must agree")
    if len(pairs) == 1:
        x, y = pairs[0]
        return x.unsqueeze(0).expand(members, *x.shape), y.unsqueeze(0).expand(members, *y.shape)
    return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])


def _infer_info(model: WatchedEnsemble, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
                ) -> tuple[TaskInfo, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The task as the data and one forward pass show it, and the splits with
    targets in the layout the losses read (class indices long, regression [N, out])."""
    first = next(iter(splits))
    x, y = splits[first]
    model.eval()
    try:
        with torch.no_grad():
            out = _output_tensor(model.nets[0](x[0, : min(2, x.shape[1])]))
    except LearnscopeError:
        raise
    except Exception as exc:
        raise LearnscopeError(f"watch: models[0] failed on data['{first}'] inputs of shape "
                              f"{tuple(x.shape[2:])}: {exc.__class__.__name__}: {exc}") from None
    finally:
        model.train()
    classification = not y.is_floating_point() and not y.is_complex()
    sequence = classification and out.dim() == 3
    expected = 2 if sequence else 1
    fixed = {}
    for name, (xs, ys) in splits.items():
        if classification:
            if ys.is_floating_point() or ys.dim() != 1 + expected:
                raise LearnscopeError(f"watch: data['{name}'] targets are {tuple(ys.shape[2:]) or 'scalars'} of "
                                      f"{ys.dtype}; with outputs of shape {tuple(out.shape[1:])} the model is a "
                                      f"{'sequence model' if sequence else 'classifier'}: give one integer class "
                                      f"per {'position' if sequence else 'example'}")
            ys = ys.long()
            scored = ys[ys != IGNORE] if sequence else ys
            if scored.numel() and (int(scored.min()) < 0 or int(scored.max()) >= out.shape[-1]):
                raise LearnscopeError(f"watch: data['{name}'] labels range {int(scored.min())}..{int(scored.max())}"
                                      f"; the model has {out.shape[-1]} outputs (classes 0..{out.shape[-1] - 1})")
        else:
            if ys.dim() == 2 and out.dim() == 2 and out.shape[1] == 1:
                ys = ys.unsqueeze(-1)
            if ys.shape[2:] != out.shape[1:]:
                raise LearnscopeError(f"watch: data['{name}'] targets are {tuple(ys.shape[2:])} per example but the "
                                      f"model outputs {tuple(out.shape[1:])}; floating targets mean regression, "
                                      "which needs them to match (integer targets mean classes)")
        fixed[name] = (xs, ys)
    tokens = not x.is_floating_point()
    info = TaskInfo(
        input_kind="tokens" if tokens else "vector", input_shape=tuple(x.shape[2:]), output_dim=out.shape[-1],
        loss="cross_entropy" if classification else "mse", splits=tuple(splits), sequence=sequence,
    )
    return info, fixed


def _probes(probes: Sequence[str | Mapping[str, Any] | ProbeSpec] | None, info: TaskInfo,
            model: WatchedEnsemble) -> tuple[list[Probe], Needs]:
    if probes is None:
        probes = ["loss", "accuracy"] if info.is_classification else ["loss"]
    if isinstance(probes, (str, Mapping)) or not isinstance(probes, Sequence):
        raise SpecError("probes", "must be a list of probe names or {name: ..., ...} entries")
    built: list[Probe] = []
    needs = Needs()
    seen: dict[str, int] = {}
    for i, item in enumerate(probes):
        probe = resolve_component(registry.probes, ProbeSpec, item, f"probes[{i}]")
        assert isinstance(probe, Probe)  # every registered probe is one
        probe.check(info, model, f"probes[{i}]")
        for metric in probe.names(info):
            if metric in seen:
                raise SpecError(f"probes[{i}]", f"metric '{metric}' is already measured by probes[{seen[metric]}]")
            seen[metric] = i
        needs.merge(probe.needs(info))
        built.append(probe)
    return built, needs


class Watch:
    """A watched training loop, recorded as one run; see the module docstring."""

    def __init__(self, models: nn.Module | Sequence[nn.Module], data: Mapping[str, SplitData],
                 probes: Sequence[str | Mapping[str, Any] | ProbeSpec] | None = None,
                 store: Store | str | None = None, name: str | None = None, every: int = 100,
                 run_id: str | None = None, seeds: Sequence[int] | None = None):
        nets = _members(models)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise LearnscopeError(f"watch: every must be a positive number of steps; got {every!r}")
        seed_list = list(range(len(nets))) if seeds is None else list(seeds)
        if (len(seed_list) != len(nets) or len(set(seed_list)) != len(seed_list)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seed_list)):
            raise LearnscopeError(f"watch: seeds {seed_list} must be {len(nets)} distinct non-negative integers, "
                                  "one per model")
        if not isinstance(data, Mapping) or not data:
            raise LearnscopeError("watch: data must be a dict of splits, e.g. {'train': (x, y), 'test': (x, y)}")
        param = next((p for net in nets for p in (*net.parameters(), *net.buffers())), None)
        self.device = param.device if param is not None else torch.device("cpu")
        splits = {str(split): _split(str(split), value, len(nets), self.device) for split, value in data.items()}
        ensemble = WatchedEnsemble(nets, output_dim=0)
        info, splits = _infer_info(ensemble, splits)
        self.model = WatchedEnsemble(nets, info.output_dim)
        self.info = info
        self.seeds = seed_list
        self.every = every
        self.probes, self._needs = _probes(probes, info, self.model)
        self.view = WatchedLoop(self.model, info, _Data(info, splits), seed_list)
        self.name = name or WATCH
        self.run_id = run_id_for(run_id, self.name)
        self.store = open_store(store)
        self.store.check_room(STORE_MARGIN_BYTES)
        self._last_step: int | None = None
        self._probed_step: int | None = None
        self._closed = False
        self._held = ExitStack()
        self._held.enter_context(self.store.hold(self.run_id))
        try:
            self.store.create_run(self.run_id, self.name, self._spec(nets, splits), seed_list, kind=WATCH)
        except BaseException:
            self._held.close()
            raise

    def _spec(self, nets: list[nn.Module], splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
        cls = type(nets[0])
        return {"watch": {
            "model": f"{cls.__module__}.{cls.__qualname__}",
            "parameters_per_model": sum(p.numel() for p in nets[0].parameters()),
            "device": str(self.device),
            "every": self.every,
            "probes": [probe.to_dict() for probe in self.probes],
            "task": {"loss": self.info.loss, "output_dim": self.info.output_dim, "sequence": self.info.sequence,
                     "input_kind": self.info.input_kind},
            "data": {split: {"examples": int(y.shape[1]), "inputs": list(x.shape[2:]), "input_dtype": str(x.dtype),
                             "targets": list(y.shape[2:]), "target_dtype": str(y.dtype)}
                     for split, (x, y) in splits.items()},
        }}

    # ------------------------------------------------------------ the loop

    def step(self, step: int) -> dict[str, list[float]] | None:
        """Mark the end of update `step` (steps increase); probe when it is a multiple
        of `every`. Returns the metrics when it probed (per name, one value per seed)."""
        self._open()
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise LearnscopeError(f"watch: step must be a non-negative integer; got {step!r}")
        if self._last_step is not None and step <= self._last_step:
            raise LearnscopeError(f"watch: steps must increase; got {step} after {self._last_step}")
        self._last_step = step
        return self.probe(step) if step % self.every == 0 else None

    def probe(self, step: int | None = None) -> dict[str, list[float]]:
        """Probe now (at `step`, by default the last step seen, or 0) and record it."""
        self._open()
        step = (self._last_step or 0) if step is None else step
        if self._probed_step is not None and step <= self._probed_step:
            raise LearnscopeError(f"watch: step {step} is not after the last probed step {self._probed_step}")
        self.view.begin(step)
        ctx = ProbeContext(self.view, step, self._needs)
        metrics: dict[str, torch.Tensor] = {}
        try:
            for probe in self.probes:
                metrics.update(probe.measured(ctx))
        finally:
            self.view.end()
        host = {name: value.detach().cpu().double().tolist() for name, value in metrics.items()}
        rows: dict[str, Sequence[float]] = dict(host)
        self.store.write_metrics(self.run_id, step, self.seeds, rows)
        self._probed_step = step
        return host

    def close(self) -> None:
        """Probe the last step seen (unless it was probed) and mark the run finished."""
        if self._closed:
            return
        try:
            last = self._last_step or 0
            if self._probed_step is None or self._probed_step < last:
                self.probe(last)
        except BaseException as exc:
            self._finish(exc)
            raise
        self._finish(None)

    def _finish(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if exc is None:
                self.store.set_status(self.run_id, "finished")
            elif isinstance(exc, KeyboardInterrupt):
                self.store.set_status(self.run_id, "interrupted", "interrupted by the user")
            else:
                self.store.set_status(self.run_id, "failed", f"{exc.__class__.__name__}: {exc}")
        finally:
            self._held.close()

    def _open(self) -> None:
        if self._closed:
            raise LearnscopeError(f"watch: run '{self.run_id}' is closed; start another watch to record more")

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self._finish(exc)

    @property
    def run(self) -> Run:
        """The run as the store holds it (metrics, summary(), status)."""
        return Run(self.store, self.run_id)


def watch(models: nn.Module | Sequence[nn.Module], data: Mapping[str, SplitData],
          probes: Sequence[str | Mapping[str, Any] | ProbeSpec] | None = None, store: Store | str | None = None,
          name: str | None = None, every: int = 100, run_id: str | None = None,
          seeds: Sequence[int] | None = None) -> Watch:
    """Watch your own training loop: `with watch(models, data, probes, ...) as w:` and
    `w.step(step)` after every update. `models`: one nn.Module or a list (the seeds,
    one architecture); `data`: {split: (x, y)} shared by every model, or {split:
    [(x, y) per model]}; `probes`: learnscope probe names or {name: ..., ...} entries
    (default: loss, and accuracy for integer targets); `store`: the store directory
    (default ./learnscope-runs or $LEARNSCOPE_STORE); `every`: probe every this many
    steps (and at the last one); `seeds`: the numbers the models are recorded under
    (default 0..S-1). Bad input is refused in one LearnscopeError before anything
    is recorded."""
    return Watch(models, data, probes, store, name, every, run_id, seeds)
