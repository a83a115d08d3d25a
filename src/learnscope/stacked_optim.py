"""The optimizer updates of learnscope.optimizers, written over the stacked
parameters with PyTorch's multi-tensor kernels, without torch.optim.

torch.optim's first construction of any optimizer imports torch._dynamo
(`Optimizer.add_param_group` is wrapped by `torch._disable_dynamo`): about
1.2 s of a command that trains for seconds. These classes issue the very
kernels torch.optim issues for the same settings, in the same order, so
the numbers are the same bit for bit (tests/test_optimizers.py):

- SGD: torch.optim.SGD(foreach=True)'s `_multi_tensor_sgd` (weight decay
  added to the gradient, the momentum buffer, then `_foreach_add_`);
- Adam, AdamW: torch.optim.Adam/AdamW(fused=True)'s `_fused_adam_` /
  `_fused_adamw_` kernels, with the step counts as float32 tensors on the
  parameters' device.

`state_dict` and `load_state_dict` read and write torch.optim's layout
(`state` by parameter index, `param_groups` with torch's keys), so
checkpoints written before these classes load into them and back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class StackedOptimizer:
    """One parameter group over the stacked parameters; the part of
    torch.optim.Optimizer's interface the trainer uses."""

    defaults: dict[str, Any]

    def __init__(self, params: Sequence[torch.Tensor], **settings: Any):
        self.params = list(params)
        self.defaults = dict(settings)
        self.param_groups: list[dict[str, Any]] = [{**settings, "params": self.params}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    def _with_grads(self) -> dict[tuple[torch.device, torch.dtype], list[torch.Tensor]]:
        """Parameters that have a gradient (torch.optim skips the others), by device and dtype."""
        groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in self.params:
            if p.grad is not None:
                groups.setdefault((p.device, p.dtype), []).append(p)
        return groups

    @torch.no_grad()
    def step(self) -> None:
        for params in self._with_grads().values():
            self._update(params, [p.grad for p in params])  # type: ignore[misc]  # filtered to those with one

    def _update(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        index = {p: i for i, p in enumerate(self.params)}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"state": {index[p]: dict(entries) for p, entries in self.state.items()},
                "param_groups": [{**group, "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError("the optimizer state does not match these parameters")
        self.param_groups[0].update({k: v for k, v in groups[0].items() if k != "params"})
        self.state = {}
        for i, entries in state_dict["state"].items():
            p = self.params[int(i)]
            self.state[p] = {key: self._placed(key, value, p) for key, value in entries.items() if value is not None}

    def _placed(self, key: str, value: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """A state tensor on its parameter's device, as torch.optim places it."""
        return value.to(device=p.device, dtype=p.dtype)


class SGD(StackedOptimizer):
    def __init__(self, params: Sequence[torch.Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum, dampening=0, weight_decay=weight_decay, nesterov=False,
                         maximize=False, foreach=True, differentiable=False, fused=None)

    def _update(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        group = self.param_groups[0]
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        if weight_decay != 0:
            grads = list(torch._foreach_add(grads, params, alpha=weight_decay))
        if momentum != 0:
            buffers = [self.state.get(p, {}).get("momentum_buffer") for p in params]
            if all(b is not None for b in buffers):
                bufs = [b for b in buffers if b is not None]
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads, alpha=1 - group["dampening"])
            else:
                bufs = []
                for g, b in zip(grads, buffers):
                    if b is None:
                        b = g.detach().clone()
                    else:
                        b.mul_(momentum).add_(g, alpha=1 - group["dampening"])
                    bufs.append(b)
            for p, b in zip(params, bufs):
                self.state.setdefault(p, {})["momentum_buffer"] = b
            grads = bufs
        torch._foreach_add_(params, grads, alpha=-lr)


class Adam(StackedOptimizer):
    decoupled = False

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas: tuple[float, float],
                 weight_decay: float = 0.0, eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=False,
                         maximize=False, foreach=None, capturable=False, differentiable=False, fused=True,
                         decoupled_weight_decay=self.decoupled)

    def _update(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        group = self.param_groups[0]
        for p in params:
            if p not in self.state:
                self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [], steps,
               amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
               eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)

    def _placed(self, key: str, value: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if key == "step":  # fused kernels keep the count as float32 beside the parameter
            return value.to(device=p.device, dtype=torch.float32)
        return super()._placed(key, value, p)


class AdamW(Adam):
    decoupled = True


# the authors' guard on both denominators (a zero weight tensor, a gradient parallel to its
# weights): negligible beside any non-zero squared norm, so it changes nothing else
ORTHOGRAD_EPS = 1e-30


@torch.no_grad()
def orthogonalize_(param: torch.Tensor, grad: torch.Tensor) -> None:
    """⊥Grad's projection of one stacked parameter's gradient, in place and per
    seed (the leading axis): g⊥ = g − (⟨w, g⟩ / (⟨w, w⟩ + ε)) w, rescaled by
    ‖g‖ / (‖g⊥‖ + ε), in the parameter's dtype, as the authors' OrthoGrad does
    it for a whole tensor. Each seed's slice reads only itself."""
    seeds = param.shape[0]
    w, g = param.reshape(seeds, -1), grad.reshape(seeds, -1)
    along = (w * g).sum(1, keepdim=True) / ((w * w).sum(1, keepdim=True) + ORTHOGRAD_EPS)
    perpendicular = g - along * w
    scale = torch.linalg.vector_norm(g, dim=1, keepdim=True) / (
        torch.linalg.vector_norm(perpendicular, dim=1, keepdim=True) + ORTHOGRAD_EPS)
    grad.copy_((perpendicular * scale).view_as(grad))


class OrthoGrad(StackedOptimizer):
    """⊥Grad ("Grokking at the Edge of Numerical Stability", Prieto et al.)
    around any optimizer: each step first makes every parameter's gradient,
    seed by seed, orthogonal to its weights at its own norm (`orthogonalize_`),
    then takes the wrapped optimizer's step. Gradient interventions come
    before (the trainer's `after_backward`), and so does nothing of the
    wrapped optimizer's own: SGD's and Adam's weight decay join the gradient
    inside its step, after the projection, as in the authors' wrapper.

    The learning rate, the state and the checkpoint layout are the wrapped
    optimizer's own: a checkpoint of either loads into the other."""

    def __init__(self, base: StackedOptimizer):  # everything but the step is the wrapped optimizer's
        self.base = base
        self.params = base.params
        self.defaults = base.defaults
        self.param_groups = base.param_groups  # the same groups: the schedule sets the wrapped one's lr

    @property  # read through: loading a checkpoint replaces the wrapped one's
    def state(self) -> dict[torch.Tensor, dict[str, torch.Tensor]]:
        return self.base.state

    @state.setter
    def state(self, value: dict[torch.Tensor, dict[str, torch.Tensor]]) -> None:
        self.base.state = value

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                orthogonalize_(p, p.grad)
        self.base.step()

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
