"""Grokfast: amplify the slow component of the gradient.

Lee et al., "Grokfast: Accelerated Grokking by Amplifying Slow Gradients".
After backward, each gradient g is replaced by g + lamb * slow(g), where
slow(g) is an exponential moving average (filter "ema", decay `alpha`) or
the mean of the last `window` gradients (filter "ma"). The filter state is
per parameter element, so seeds stay independent.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from learnscope import registry
from learnscope.train.hooks import Intervention, InterventionState


@registry.interventions.register("grokfast")
class Grokfast(Intervention):
    filter: Literal["ema", "ma"] = "ema"
    alpha: float = Field(0.98, ge=0, lt=1, description="EMA decay (filter ema)")
    lamb: float = Field(2.0, ge=0, description="amplification of the slow gradient")
    window: int = Field(100, ge=1, description="moving-average length (filter ma)")

    def build(self, trainer) -> InterventionState:
        return GrokfastState(self, trainer.params)


class GrokfastState(InterventionState):
    def __init__(self, spec: Grokfast, params: list[torch.Tensor]):
        self.spec = spec
        self.params = params
        self.slow: list[torch.Tensor] | None = None  # EMA, or the running mean for "ma"
        self.history: list[torch.Tensor] | None = None  # "ma": ring buffers [window, *shape]
        self.total: list[torch.Tensor] | None = None  # "ma": sum over the ring buffer
        self.count = 0
        self.parameter_copies = spec.window + 2 if spec.filter == "ma" else 1  # ring buffers, sum, mean

    def after_backward(self, trainer) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if len(grads) != len(self.params):
            return
        if self.spec.filter == "ema":
            if self.slow is None:  # the filter starts from the first gradient, as in the paper's code
                self.slow = [g.detach().clone() for g in grads]
            else:
                torch._foreach_lerp_(self.slow, grads, 1 - self.spec.alpha)
        else:
            self._moving_average(grads)
        torch._foreach_add_(grads, self.slow, alpha=self.spec.lamb)

    def _moving_average(self, grads: list[torch.Tensor]) -> None:
        window = self.spec.window
        if self.history is None:
            self.history = [torch.zeros(window, *g.shape, dtype=g.dtype, device=g.device) for g in grads]
            self.total = [torch.zeros_like(g) for g in grads]
        slot = self.count % window
        filled = min(self.count + 1, window)
        for buffer, total, g in zip(self.history, self.total, grads):
            total.add_(g).sub_(buffer[slot])  # running sum of the last `window` gradients
            buffer[slot] = g
        self.slow = torch._foreach_div(self.total, filled)
        self.count += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"count": torch.tensor(self.count)}
        for name, tensors in (("slow", self.slow), ("history", self.history), ("total", self.total)):
            for i, t in enumerate(tensors or []):
                state[f"{name}.{i}"] = t
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.count = int(state["count"])
        for name in ("slow", "history", "total"):
            keys = sorted((k for k in state if k.startswith(f"{name}.")), key=lambda k: int(k.split(".")[1]))
            setattr(self, name, [state[k].clone() for k in keys] or None)
