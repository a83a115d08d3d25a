"""The worst-case forget set: a bilevel search for the training examples
whose influence an unlearning method erases least ("Challenging Forgets:
Unveiling the Worst-Case Forget Sets in Machine Unlearning", Fan et al.
2024; its code, OPTML-Group/Unlearn-WorstCase, data-wise `main_selmu.py`).

On a task with `train`, `forget` and `retain` splits (`forget-set`), from
the original model (`init_from`: the trainer's initial parameters), the
search chooses k = |forget| of the n training examples. Per seed it keeps
weights w ∈ [0, 1]^n with Σw = k, starting uniform (w = k/n), and repeats
`rounds` times:

- lower level: fine-tune a copy of the original for `inner_steps` signSGD
  steps (θ ← θ − inner_lr · sign ∇), full-batch, on Σ_i (1 − w_i) ℓ_i — the
  unlearning the set must survive, fine-tuning on what is not forgotten
  (the source's `w_FT`, whose signSGD step ignores momentum and weight
  decay);
- upper level: with ℓ_i the per-example loss of that fine-tuned copy on
  every training example, w ← P(w − weight_lr · (ℓ + 2γw)), P the Euclidean
  projection onto {0 ≤ w ≤ 1, Σw = k} (`capped_simplex_projection`; the
  source's `bisection`). Examples the fine-tuned model still fits gain
  weight: their influence outlasts unlearning.

The forget set is the top k of the final w; `retain` becomes the other
n − k training examples (in `train`'s order). Both splits are rewritten in
place at the run's start (`on_start`), so the run's own training (an
unlearning method's forget and retain batches) and every probe (forget
accuracy, membership AUC against `holdout`) see the searched set; `train`,
`holdout` and `test` are the task's. With `restart`, the run then trains
from the seeds' own initialization (the model as built, before `init_from`
loaded the original) instead: the retrain oracle of the searched set, run
on `retain` (`recipe.train_split: retain`).

The search reads only the original's parameters and the data, so it is the
same in every arm that runs it and after a resume (it runs again; the
checkpoint holds the trained parameters). Cost: rounds × (inner_steps + 1)
full-batch passes over `train` at the start; the lower level's copy and
its gradients are the state's parameter copies.
"""

from __future__ import annotations

from typing import cast

import torch
from pydantic import Field
from torch.func import functional_call

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.losses import example_losses
from learnscope.models.base import Model
from learnscope.models.trainer_view import TrainerView
from learnscope.train.data import gather
from learnscope.train.hooks import Intervention, InterventionState

BISECTION_STEPS = 100  # halvings of μ's bracket: far past float64's resolution of any bracket of width ≤ 2^50


def capped_simplex_projection(a: torch.Tensor, k: float) -> torch.Tensor:
    """Per row of `a` [S, n], the point of {w : 0 ≤ w ≤ 1, Σw = k} nearest to
    it: clamp(a − μ, 0, 1) with μ found by bisection so the row sums to k
    (0 < k < n). In float64."""
    a = a.double()
    low = (a - 1).min(-1, keepdim=True).values  # every entry clamps to 1 there: sum n ≥ k
    high = a.max(-1, keepdim=True).values  # every entry clamps to 0 there: sum 0 ≤ k
    for _ in range(BISECTION_STEPS):
        mu = (low + high) / 2
        over = (a - mu).clamp(0, 1).sum(-1, keepdim=True) > k
        low, high = torch.where(over, mu, low), torch.where(over, high, mu)
    return (a - (low + high) / 2).clamp(0, 1)


@registry.interventions.register("worst-case-forget-set")
class WorstCaseForgetSet(Intervention):
    """Replace the task's forget set by the bilevel search's worst case (same size)."""

    rounds: int = Field(3, ge=1, le=1000, description="upper-level updates of the weights (the source's select_epochs)")
    inner_steps: int = Field(20, ge=0, le=100_000, description="signSGD fine-tuning steps of the lower level, per round")
    inner_lr: float = Field(1e-3, gt=0, le=10, description="the lower level's signSGD step (the source's theta_lr)")
    weight_lr: float = Field(0.1, gt=0, le=1e6, description="the upper level's step on the weights (the source's w_lr)")
    gamma: float = Field(0.0, ge=0, le=1e6, description="weight of the upper level's penalty γ‖w‖²")
    restart: bool = Field(False, description="train from the seeds' own initialization (the searched set's oracle)")

    def build(self, trainer: TrainerView) -> InterventionState:
        path = self.spec_path(trainer)
        missing = [s for s in ("train", "forget", "retain") if s not in trainer.info.splits]
        if missing:
            raise SpecError(path, f"{self.registry_name} chooses the forget set among the training examples: it needs "
                            f"a task with train, forget and retain splits (e.g. forget-set); task "
                            f"'{trainer.experiment.task.registry_name}' has no split '{missing[0]}'")
        return WorstCaseState(self)


class WorstCaseState(InterventionState):
    parameter_copies = 2  # the lower level's copy and its gradients, while the search runs

    def __init__(self, spec: WorstCaseForgetSet):
        self.spec = spec

    def on_start(self, trainer: TrainerView) -> None:
        chosen = self.search(trainer)
        x, y = trainer.data.splits["train"]
        rest = torch.ones(y.shape[:2], dtype=torch.bool, device=y.device).scatter_(1, chosen, False)
        rest_index = rest.nonzero()[:, 1].view(len(y), -1)
        for split, index in (("forget", chosen), ("retain", rest_index)):
            for part, taken in zip(trainer.data.splits[split], gather(index, x, y)):
                part.copy_(taken)
        if self.spec.restart:
            self._restart(trainer)

    def search(self, trainer: TrainerView) -> torch.Tensor:
        """Per seed, the indices into `train` [S, k] of the searched forget set."""
        spec = self.spec
        x, y = trainer.data.splits["train"]
        n, k = y.shape[1], trainer.data.size("forget")
        names = [name for name, p in trainer.model.named_parameters() if p.requires_grad]

        def losses(params: list[torch.Tensor]) -> torch.Tensor:
            outputs = functional_call(trainer.model, dict(zip(names, params)), (x,))
            return example_losses(trainer.info, outputs, y, trainer.recipe.loss)

        w = torch.full((len(trainer.seeds), n), k / n, dtype=torch.float64, device=y.device)
        for _ in range(spec.rounds):
            theta = [p.detach().clone().requires_grad_(True) for p in trainer.initial_params]
            for _ in range(spec.inner_steps):
                # a sum over seeds: each seed's parameters get its own gradient
                weighted = ((1 - w) * losses(theta)).sum()
                grads = torch.autograd.grad(weighted, theta)
                with torch.no_grad():
                    for p, g in zip(theta, grads):
                        p.sub_(spec.inner_lr * g.sign())
            with torch.no_grad():
                fitted = losses(theta).double()
            w = capped_simplex_projection(w - spec.weight_lr * (fitted + 2 * spec.gamma * w), k)
        # ties (equal weights) go to the lower index: a deterministic choice
        return torch.sort(w, dim=1, descending=True, stable=True).indices[:, :k]

    def _restart(self, trainer: TrainerView) -> None:
        """The seeds' own initialization becomes the reference, and, at step 0,
        the parameters (a resumed run keeps its checkpoint's)."""
        fresh = cast(Model, trainer.experiment.model).build(trainer.info, trainer.seeds).to(trainer.params[0].device)
        built = [p for p in fresh.parameters() if p.requires_grad]
        with torch.no_grad():
            for p, reference, q in zip(trainer.params, trainer.initial_params, built):
                reference.copy_(q)
                if trainer.step == 0:
                    p.copy_(q)

