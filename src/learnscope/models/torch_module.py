"""Any `torch.nn.Module` as a seed ensemble.

    model: {name: torch-module, factory: "mylab.nets:make_mlp", kwargs: {width: 64}}
    model: {name: torch-module, factory: "path/to/nets.py:make_mlp", kwargs: {width: 64}}

The factory builds one member from `kwargs`; if it has a parameter named
`info` it also receives the task's `TaskInfo` (input shape, output
dimension, vocabulary size, whether the task is a sequence task). A file
path is read relative to the working directory. The member maps a batch of
one seed's inputs [B, *input_shape] (float vectors, or long tokens) to
[B, output_dim], or [B, T, output_dim] on a sequence task; it may return a
tensor, a tuple whose first element is the tensor, or an object with
`logits` (a Hugging Face output).

learnscope builds one member per seed, each inside `torch.random.fork_rng`
with torch's global generator seeded from the seed alone (learnscope.seeding,
stream "init"), so the module's own initialization is used and a seed's
member never depends on its ensemble mates (nor on, nor changes, the global
RNG state). The members' parameters become stacked `nn.Parameter`s of the
ensemble ([S, *shape], named `net.<the member's parameter name>`), so the
optimizer, checkpoints, resume, `init_from` and divergence handling work as
for the built-in models; the forward pass is `torch.func.vmap` over
`torch.func.functional_call` of one template member (on the meta device;
ties such as a tied unembedding kept) with each seed's slices of the
stacked tensors. What a member holds beyond its
trainable parameters (buffers, parameters with requires_grad off) must be
the same for every seed and must not change in forward: it is shared, not
stacked, and not checkpointed. Random operations in forward (dropout in
training mode) are refused: under vmap their draws would depend on the
ensemble. One dry pass of a member on two dummy examples, and one of the
ensemble, check all of this when the model is built.

Sites, read through `Sites` like the built-in models' ([S, B, ...]):
- every submodule that runs once per forward pass, by its name in the
  member (`0`, `encoder.layers.1.mlp`, ...): its output (a tuple's or an
  output object's first tensor), if it has the batch axis first (a
  position embedding broadcast over the batch is no site);
- `<module>.pattern` for an attention module that also returns its
  attention pattern ([S, B, heads, T, T], rows summing to one): read only;
- `penultimate`, when the output is an `nn.Linear`'s: that layer's input,
  and `readout()` is its weight [S, C, D] (what `neural_collapse` reads);
- `logits`: the output.
Every site except the patterns can be edited (ablate, patch): vmap cannot
hand an edit all seeds at once mid-network, so a pass with k edited sites
runs k + 1 times, each run replacing the sites already edited and
recording the next one for its edit (on the stacked activation); the
gradient flows as in one pass through the edited network.

Probes: `effective_rank` and `kernel_alignment` take any site;
`neural_collapse` needs `penultimate` (a final `nn.Linear`); the rest read
only the outputs or the parameters.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import nn
from torch.func import functional_call, vmap

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError, one_of
from learnscope.models.base import EnsembleModel, Model, Sites
from learnscope.seeding import derive_seed
from learnscope.tasks.base import TaskInfo

PENULTIMATE, LOGITS = "penultimate", "logits"
DRY_BATCH = 2  # examples of the dry passes: more than one, so a batch axis cannot hide


@registry.models.register("torch-module")
class TorchModule(Model):
    factory: str = Field(description="'package.module:function' or 'path/to/file.py:function' building one member")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the factory")

    @field_validator("factory")
    @classmethod
    def _module_and_function(cls, factory):
        split_factory(factory)
        return factory

    def build(self, info: TaskInfo, seeds: Sequence[int]) -> EnsembleModel:
        function = load_factory(self.factory)
        kwargs = dict(self.kwargs)
        if _takes_info(function):
            if "info" in kwargs:
                raise SpecError("model.kwargs.info", "the factory receives the task's TaskInfo as `info`; leave it out")
            kwargs["info"] = info

        def member() -> nn.Module:
            try:
                built = function(**kwargs)
            except LearnscopeError:
                raise
            except Exception as exc:
                raise SpecError("model.factory", f"'{self.factory}' failed: {exc.__class__.__name__}: {exc}") from None
            if not isinstance(built, nn.Module):
                raise SpecError("model.factory", f"'{self.factory}' returned a {type(built).__name__}, "
                                "not a torch.nn.Module")
            return built

        return ensemble_of(member, info, seeds, "model.factory", f"'{self.factory}'")


# ---------------------------------------------------------------- the factory

FORM = "'package.module:function' or 'path/to/file.py:function'"


def split_factory(factory: str) -> tuple[str, str]:
    where, _, name = factory.strip().rpartition(":")
    if not where or not name.isidentifier():
        raise ValueError(f"must be of the form {FORM}")
    return where, name


_file_modules: dict[str, ModuleType] = {}


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def load_factory(factory: str) -> Callable[..., Any]:
    """The callable a factory string names; one SpecError line for what is wrong."""
    path = "model.factory"
    try:
        where, name = split_factory(factory)
    except ValueError as exc:
        raise SpecError(path, f"{exc} (got {factory!r})") from None
    if _is_file(where):
        module = _load_file(where, path)
    else:
        try:
            found = importlib.util.find_spec(where) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise SpecError(path, f"no module named '{where}' (give an importable module or a .py file)")
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise SpecError(path, f"importing '{where}' failed: {exc.__class__.__name__}: {exc}") from None
    if not hasattr(module, name):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise SpecError(path, f"'{where}' has no '{name}'; {one_of(name, names)}")
    function = getattr(module, name)
    if not callable(function):
        raise SpecError(path, f"'{factory}' is a {type(function).__name__}, not callable")
    return function


def _load_file(where: str, path: str) -> ModuleType:
    file = Path(where)
    if not file.is_file():
        raise SpecError(path, f"no such file: {where}")
    key = str(file.resolve())
    if key in _file_modules:
        return _file_modules[key]
    name = f"learnscope_factory_{file.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise SpecError(path, f"cannot load {where} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise SpecError(path, f"importing {where} failed: {exc.__class__.__name__}: {exc}") from None
    _file_modules[key] = module
    return module


def _takes_info(function: Callable[..., Any]) -> bool:
    try:
        return "info" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin or a class without an inspectable signature
        return False


# ---------------------------------------------------------------- one member, seed by seed


def member_of(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A member built under the seed's own draws of torch's global generator,
    leaving the generator's state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return build()


def _signature(module: nn.Module) -> list[tuple]:
    params = [(n, tuple(p.shape), p.dtype, p.requires_grad) for n, p in module.named_parameters()]
    return params + [(n, tuple(b.shape), b.dtype) for n, b in module.named_buffers()]


def _on_meta(module: nn.Module) -> nn.Module:
    """The module with every parameter and buffer on the meta device, shared
    tensors kept shared (`Module.to('meta')` would untie a tied unembedding)."""
    new: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id -> (old, new); the old kept alive
    for mod in module.modules():
        for table, make in ((mod._parameters, lambda t: nn.Parameter(t.to("meta"), t.requires_grad)),
                            (mod._buffers, lambda t: t.to("meta"))):
            for key, tensor in table.items():
                if tensor is None:
                    continue
                if id(tensor) not in new:
                    new[id(tensor)] = (tensor, make(tensor.detach()))
                table[key] = new[id(tensor)][1]  # type: ignore[assignment]
    return module


# ---------------------------------------------------------------- what a dry pass finds


@dataclass(frozen=True)
class Site:
    module: str  # the member's submodule whose output holds the site
    index: tuple[int | str, ...]  # where the tensor sits in that output: () the output itself
    editable: bool = True


def _tensor_index(value: Any) -> tuple[int | str, ...] | None:
    """Where the first tensor of a module's output is, or None if it has none."""
    if isinstance(value, torch.Tensor):
        return ()
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, torch.Tensor):
                return (key,)
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            if isinstance(item, torch.Tensor):
                return (i,)
    return None


def _get(value: Any, index: tuple[int | str, ...]) -> Any:
    for key in index:
        value = value[key]
    return value


def _replace(value: Any, index: tuple[int | str, ...], new: torch.Tensor) -> Any:
    if not index:
        return new
    key, rest = index[0], index[1:]
    if isinstance(value, Mapping):  # a ModelOutput: setting an item sets its attribute too
        out = copy.copy(value)
        out[key] = _replace(value[key], rest, new)  # type: ignore[index]
        return out
    assert isinstance(key, int)
    items = list(value)
    items[key] = _replace(items[key], rest, new)
    if isinstance(value, list):
        return items
    return type(value)(*items) if hasattr(value, "_fields") else tuple(items)  # a named tuple keeps its type


def output_tensor(value: Any) -> Any:
    """A member's output: a tensor, an object with `logits`, or a tuple led by the tensor."""
    if isinstance(value, torch.Tensor):
        return value
    logits = value.get("logits") if isinstance(value, Mapping) else getattr(value, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    index = _tensor_index(value)
    return _get(value, index) if index is not None and len(index) == 1 and index[0] == 0 else None


def _is_pattern(t: Any, batch: int, length: int) -> bool:
    """An attention pattern of a batch: [B, H, T, T], each row a distribution."""
    if not (isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[0] == batch and t.shape[-2:] == (length, length)
            and t.is_floating_point()):
        return False
    return bool((t >= 0).all()) and torch.allclose(t.sum(-1), torch.ones((), dtype=t.dtype), atol=1e-4)


@dataclass
class Discovery:
    sites: dict[str, Site]  # in call order
    repeated: list[str]  # submodules that run more than once per pass: no site
    unbatched: dict[str, list[int]]  # submodules whose output has no batch axis (its shape on the dry batch): no site
    final: str | None  # the nn.Linear whose output is the member's output


def discover(member: nn.Module, x: torch.Tensor, info: TaskInfo, call_kwargs: Mapping[str, Any], path: str,
             what: str) -> Discovery:
    """Run one member on dummy inputs, recording what every submodule returns;
    refuse outputs of the wrong shape and forwards that change buffers."""
    calls: dict[str, int] = {}
    outputs: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    modules = dict(member.named_modules())

    def record(name, module, args, output):
        calls[name] = calls.get(name, 0) + 1
        outputs[name] = output
        inputs[name] = args[0] if args else None

    handles = [m.register_forward_hook(partial(record, name)) for name, m in modules.items() if name]
    before = {name: b.clone() for name, b in member.named_buffers()}
    try:
        with torch.no_grad():
            out = member(x, **call_kwargs)
    except LearnscopeError:
        raise
    except Exception as exc:
        kind = "tokens" if info.input_kind == "tokens" else str(x.dtype).replace("torch.", "")
        raise SpecError(path, f"the forward pass of {what} fails on the task's inputs {list(x.shape)} ({kind}): "
                        f"{exc.__class__.__name__}: {exc}") from None
    finally:
        for handle in handles:
            handle.remove()
    for name, b in member.named_buffers():
        if not torch.equal(before[name], b):
            raise SpecError(path, f"the forward pass of {what} changes buffer '{name}' (running statistics?): a member's "
                            "state must be its parameters (checkpoints keep only them, vmap updates only them); "
                            "use track_running_stats=False or a norm without running statistics")
    logits = output_tensor(out)
    expected = [DRY_BATCH, *((info.input_shape[0],) if info.sequence else ()), info.output_dim]
    if logits is None:
        raise SpecError(path, f"{what} returns a {type(out).__name__}; it must return a tensor {expected} "
                        "(or a tuple led by it, or an object with logits)")
    if list(logits.shape) != expected:
        per = "[B, T, output_dim]: a sequence task scores every position" if info.sequence else "[B, output_dim]"
        raise SpecError(path, f"{what} returns {list(logits.shape)} on {DRY_BATCH} examples; the task needs "
                        f"{per} = {expected}")

    sites: dict[str, Site] = {}
    repeated = [name for name in calls if calls[name] > 1]
    unbatched: dict[str, list[int]] = {}
    patterns: list[torch.Tensor] = []
    final = None
    length = info.input_shape[0]
    for name in calls:  # call order (a module's hook fires when it returns: inner modules first)
        if calls[name] > 1:
            continue
        value = outputs[name]
        index = _tensor_index(value)
        if index is None:
            continue
        tensor = _get(value, index)
        if tensor.dim() == 0 or tensor.shape[0] != DRY_BATCH:  # not one activation per example (a broadcast one)
            unbatched[name] = list(tensor.shape)
            continue
        sites[name] = Site(name, index)
        if isinstance(value, (tuple, list)) and info.input_kind == "tokens":
            for i, item in enumerate(value):
                if i != index[0] and _is_pattern(item, DRY_BATCH, length) and not any(item is p for p in patterns):
                    patterns.append(item)
                    sites[f"{name}.pattern"] = Site(name, (i,), editable=False)
                    break
        if (final is None and isinstance(modules[name], nn.Linear) and _get(value, index) is logits
                and isinstance(inputs[name], torch.Tensor)):
            final = name
    for special in (PENULTIMATE, LOGITS):
        sites.pop(special, None)  # the common names mean the same in every model
    return Discovery(sites, repeated, unbatched, final)


# ---------------------------------------------------------------- the ensemble


def ensemble_of(build: Callable[[], nn.Module], info: TaskInfo, seeds: Sequence[int], path: str, what: str,
                call_kwargs: Mapping[str, Any] | None = None) -> ModuleEnsemble:
    """S members from `build` (called once per seed, under the seed's generator),
    stacked into one ensemble; errors name `path` and the source `what`."""
    call_kwargs = dict(call_kwargs or {})
    first = member_of(build, seeds[0])
    first.train()
    dummy = _dummy_inputs(info)
    with torch.random.fork_rng(devices=[]):  # a forward that draws (refused below) leaves the global RNG as it was
        found = discover(first, dummy, info, call_kwargs, path, what)
    params = dict(first.named_parameters())
    trainable = [name for name, p in params.items() if p.requires_grad]
    if not trainable:
        raise SpecError(path, f"{what} has no trainable parameters")
    fixed = {name: p.detach() for name, p in params.items() if not p.requires_grad}
    fixed.update(dict(first.named_buffers()))
    stacked = {name: torch.empty((len(seeds), *params[name].shape), dtype=params[name].dtype) for name in trainable}
    with torch.no_grad():
        for name in trainable:
            stacked[name][0] = params[name]
        layout = _signature(first)
        others: Iterable[tuple[int, int]] = enumerate(seeds[1:], 1)
        if len(seeds) == 1 and fixed:  # a second seed shows whether the fixed tensors depend on the seed
            others = [(-1, seeds[0] + 1 if seeds[0] < 2**62 else seeds[0] - 1)]
        for i, seed in others:
            member = member_of(build, seed)
            if _signature(member) != layout:
                raise SpecError(path, f"{what} builds members of different parameters or shapes for seeds {seeds[0]} "
                                f"and {seed}: a member may depend on its seed only through its random draws")
            tensors: dict[str, torch.Tensor] = dict(member.named_parameters())
            tensors.update(dict(member.named_buffers()))
            for name, value in fixed.items():
                if not torch.equal(tensors[name], value):
                    kind = "buffer" if name in dict(first.named_buffers()) else "parameter with requires_grad off"
                    raise SpecError(path, f"{kind} '{name}' of {what} differs between seeds: fixed tensors are "
                                    "shared by the ensemble, not stacked; make it trainable or draw it from a "
                                    "generator of its own")
            if i >= 0:
                for name in trainable:
                    stacked[name][i] = tensors[name]
            del member, tensors
    ensemble = ModuleEnsemble(_on_meta(first), stacked, fixed, found, call_kwargs)
    _check_vmap(ensemble, dummy, path, what)
    return ensemble


def _dummy_inputs(info: TaskInfo) -> torch.Tensor:
    if info.input_kind == "tokens":
        return torch.zeros((DRY_BATCH, *info.input_shape), dtype=torch.long)
    return torch.zeros((DRY_BATCH, *info.input_shape))


def _check_vmap(ensemble: ModuleEnsemble, dummy: torch.Tensor, path: str, what: str) -> None:
    x = dummy.unsqueeze(0).expand(ensemble.members, *dummy.shape)
    try:
        with torch.no_grad():
            ensemble(x)
    except LearnscopeError:
        raise
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        if "random" in text:
            raise SpecError(path, f"{what} draws random numbers in forward (dropout in training mode?): under vmap a "
                            "seed's draws would depend on its ensemble mates; set its dropout to 0") from None
        raise SpecError(path, f"{what} does not run under torch.func.vmap (data-dependent control flow, .item(), "
                        f"in-place writes to shared tensors?): {exc.__class__.__name__}: {text}") from None


class ModuleEnsemble(EnsembleModel):
    """S members of one nn.Module: trainable parameters stacked on a seed axis,
    forward as vmap over a functional call of a template member on meta."""

    template: nn.Module

    def __init__(self, template: nn.Module, stacked: Mapping[str, torch.Tensor], fixed: Mapping[str, torch.Tensor],
                 found: Discovery, call_kwargs: Mapping[str, Any]):
        super().__init__()
        self.members = next(iter(stacked.values())).shape[0]
        self.__dict__["template"] = template  # not a submodule: its meta tensors are no parameters of the ensemble
        self.net = nn.Module()
        self._stacked: list[tuple[str, nn.Module, str]] = []  # (member's name, container, attribute)
        self._fixed: list[tuple[str, nn.Module, str]] = []
        non_persistent = {f"{prefix}.{b}" if prefix else b for prefix, m in template.named_modules()
                          for b in m._non_persistent_buffers_set}
        for name, tensor in stacked.items():
            container, attr = self._container(name)
            container.register_parameter(attr, nn.Parameter(tensor))
            self._stacked.append((name, container, attr))
        for name, tensor in fixed.items():
            container, attr = self._container(name)
            container.register_buffer(attr, tensor.clone(), persistent=name not in non_persistent)
            self._fixed.append((name, container, attr))
        self.sites_of = dict(found.sites)
        self.repeated = list(found.repeated)
        self.unbatched = dict(found.unbatched)
        self.call_kwargs = dict(call_kwargs)
        self.final = found.final
        # The tensors a pass hands torch.func.functional_call, by the member's names; tied
        # tensors (a tied unembedding) appear once and functional_call ties their other names.
        self._names = [name for name, _, _ in [*self._stacked, *self._fixed]]
        canonical = {id(t): n for n, t in [*template.named_parameters(), *template.named_buffers()]}
        self.readout_name = None
        if found.final is not None:
            self.readout_name = canonical[id(template.get_submodule(found.final).weight)]
        template.train(self.training)

    def _container(self, name: str) -> tuple[nn.Module, str]:
        *parents, attr = name.split(".")
        node = self.net
        for part in parents:
            if part not in node._modules:
                node.add_module(part, nn.Module())
            node = node._modules[part]  # type: ignore[assignment]
        return node, attr

    def train(self, mode: bool = True) -> ModuleEnsemble:
        super().train(mode)
        self.template.train(mode)
        return self

    # ------------------------------------------------------------ sites

    def site_names(self) -> list[str]:
        return [*self.sites_of, *([PENULTIMATE] if self.final is not None else []), LOGITS]

    def editable_site_names(self) -> list[str]:
        return [name for name in self.site_names() if name not in self.sites_of or self.sites_of[name].editable]

    def check_sites(self, sites: Iterable[str], path: str) -> None:
        valid = self.site_names()
        for site in sites:
            if site in valid:
                continue
            if site in self.repeated:
                raise SpecError(path, f"module '{site}' runs more than once per forward pass, so it has no one "
                                "activation; give each use a module of its own")
            if site in self.unbatched:
                raise SpecError(path, f"module '{site}' returns {self.unbatched[site]} on {DRY_BATCH} examples, no "
                                "activation per example (broadcast over the batch), so it is no site")
            if site == PENULTIMATE:
                raise SpecError(path, "this model's output is not an nn.Linear's, so it has no penultimate site "
                                f"(the readout's input); valid: {', '.join(valid)}")
            raise SpecError(path, f"unknown site '{site}'; {one_of(site, valid)}")

    def head_axis(self, site: str) -> int | None:
        return 2 if site.endswith(".pattern") and site in self.sites_of else None  # [S, B, H, T, T]

    def readout(self) -> torch.Tensor:
        """The final nn.Linear's weight, [S, C, D] (nn.Linear keeps [out, in])."""
        if self.readout_name is None:
            raise SpecError("model", "this model's output is not an nn.Linear's: it has no readout")
        stacked = self.tensors()
        if self.readout_name in stacked:
            return stacked[self.readout_name]
        shared = {name: getattr(container, attr) for name, container, attr in self._fixed}[self.readout_name]
        return shared.expand(self.members, *shared.shape)  # a frozen readout, the same for every seed

    # ------------------------------------------------------------ forward

    def tensors(self) -> dict[str, torch.Tensor]:
        """The current stacked parameters by the member's names (a functional_call
        over the ensemble swaps them in its containers, and they are read here)."""
        return {name: getattr(container, attr) for name, container, attr in self._stacked}

    def forward(self, x: torch.Tensor, sites: Sites | None = None) -> torch.Tensor:
        stacked = tuple(getattr(container, attr) for _, container, attr in self._stacked)
        if sites is None or not (sites.wanted or sites.edits):
            return self._run(stacked, x, (), {})[0]
        refused = [s for s in sites.edits if s in self.sites_of and not self.sites_of[s].editable]
        if refused:
            raise SpecError("interventions", f"site '{refused[0]}' can be read, not edited: the module returns its "
                            "pattern beside the output it computed from it")
        order = self._order()
        replaced: dict[str, torch.Tensor] = {}
        for site in (s for s in order if s in sites.edits):  # each edit sees every edit before it applied
            _, acts = self._run(stacked, x, (site,), replaced)
            replaced[site] = sites(site, acts[site])
        reads = [s for s in order if s in sites.wanted and s not in replaced and self._has(s)]
        out, acts = self._run(stacked, x, reads, replaced)
        for site in reads:
            sites(site, acts[site])
        return sites(LOGITS, out)

    def _order(self) -> list[str]:
        """Sites in the order their values are complete (a module's returns after its inputs'):
        `penultimate`, the final layer's input, just before that layer."""
        order = list(self.sites_of)
        if self.final is not None:
            order.insert(order.index(self.final) if self.final in order else len(order), PENULTIMATE)
        return order

    def _has(self, site: str) -> bool:
        return site in self.sites_of or (site == PENULTIMATE and self.final is not None)

    def _run(self, stacked: tuple[torch.Tensor, ...], x: torch.Tensor, capture: Sequence[str],
             replace: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One vmapped pass: the output [S, B, ...] and the `capture` sites' activations,
        with the `replace` sites' outputs replaced by the given stacked values."""
        template = self.template
        fixed = [getattr(container, attr) for _, container, attr in self._fixed]  # shared: not vmapped
        replaced_names = tuple(replace)

        hooked = bool(capture or replace)

        def member(params, inputs, replacements):
            captured: dict[str, torch.Tensor] = {}
            handles = self._hooks(capture, dict(zip(replaced_names, replacements)), captured) if hooked else ()
            try:
                tensors = dict(zip(self._names, (*params, *fixed)))
                out = functional_call(template, tensors, (inputs,), dict(self.call_kwargs))
            finally:
                for handle in handles:
                    handle.remove()
            return output_tensor(out), tuple(captured[s] for s in capture)

        out, acts = vmap(member, randomness="error")(stacked, x, tuple(replace[s] for s in replaced_names))
        return out, dict(zip(capture, acts))

    def _hooks(self, capture: Sequence[str], replace: Mapping[str, torch.Tensor], captured: dict[str, torch.Tensor]):
        template = self.template
        by_module: dict[str, list[tuple[str, Site]]] = {}
        handles = []
        for site in {*capture, *replace}:
            if site == PENULTIMATE:
                assert self.final is not None
                handles.append(template.get_submodule(self.final).register_forward_pre_hook(
                    partial(_penultimate_hook, site in capture, replace.get(site), captured)))
            else:
                by_module.setdefault(self.sites_of[site].module, []).append((site, self.sites_of[site]))
        for module, entries in by_module.items():
            handles.append(template.get_submodule(module).register_forward_hook(
                partial(_site_hook, entries, set(capture), replace, captured)))
        return handles


def _site_hook(entries, capture, replace, captured, module, args, output):
    for site, where in entries:
        if site in replace:
            output = _replace(output, where.index, replace[site])
        if site in capture:
            captured[site] = _get(output, where.index)
    return output


def _penultimate_hook(read, replacement, captured, module, args):
    if replacement is not None:
        args = (replacement, *args[1:])
    if read:
        captured[PENULTIMATE] = args[0]
    return args
