"""Periodic neurons of modular arithmetic: the per-neuron inverse
participation ratio (IPR) of the Fourier spectrum of a hidden neuron's
weights, and accuracy with the least (or most) periodic neurons pruned.

The definition is Doshi, Das, He & Gromov's ("To grok or not to grok:
Disentangling generalization and memorization on corrupted algorithmic
datasets", Section 1.1, Equations 3-4). Their network is
f(m, n) = W phi(U e_m + V e_n) on one-hot operands; for hidden neuron k,
U_k. and V_k. (length p, indexed by the operand) are its input weights and
W_.k (length p, indexed by the output class) its readout. For a vector x
with discrete Fourier transform x~,

    IPR(x) = sum_j (|x~_j| / ||x~||_2)^(2r),   r = 2 (their footnote 4),

and the neuron's IPR is the mean (IPR(U_k.) + IPR(V_k.) + IPR(W_.k)) / 3.
A neuron whose weights are one Fourier mode (the periodic, generalizing
solution) scores 1; one whose weights spread evenly over the frequencies
(a memorizing neuron) scores near the smallest value.

The transform is the authors' code's (`calculate_ipr(np.absolute(
np.fft.rfft(U[k])), r)` in d-doshi/Grokking): the one-sided real FFT,
p // 2 + 1 coefficients with the constant term, so a real cosine scores 1
and a flat spectrum 1 / (p // 2 + 1), about 2/p. `transform: fft` takes the
full complex DFT instead, the convention of the paper's stated range
[1/p, 1]: a flat spectrum scores 1/p, a real cosine 1/2 (its power split
between +k and -k), a complex exponential 1. The ratio is scale-free, so
the DFT's normalization does not matter; a vector of zeros (a dead neuron)
scores 0.

With `token_input: one_hot` (the paper's inputs) U and V are the first
layer's rows for the operands' one-hot blocks. With a token embedding E
(`mlp`'s default for token inputs), neuron k's effective input weight for the operand at position
t is its first-layer row against the embedding: U_k,m = E[m] . W1[t-block, k]
for m = 0..p-1 (t = 0 gives U, t = 1 gives V); the `=` token adds a constant
to the pre-activation, which has no Fourier content and is left out. W_.k
is the neuron's row of the readout over the p classes.

Pruning zeroes the chosen neurons' activations (site `hidden.0`), which
removes them from the output as the authors' zeroing of U_k., V_k. and W_.k
does; the weights themselves are untouched (a probe never changes the model).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError
from learnscope.losses import example_accuracy
from learnscope.models.base import EnsembleModel
from learnscope.models.mlp import MLPNetwork
from learnscope.probes.base import Probe, ProbeContext, check_splits, needs_one_label_per_example
from learnscope.tasks.base import TaskInfo

Transform = Literal["rfft", "fft"]


def inverse_participation_ratio(vectors: torch.Tensor, r: int = 2, transform: Transform = "rfft") -> torch.Tensor:
    """IPR of the Fourier spectrum of each vector: vectors [..., n] -> [...]
    (float64), sum_j (|x~_j| / ||x~||_2)^(2r); 0 for a vector of zeros."""
    if not isinstance(vectors, torch.Tensor) or not vectors.is_floating_point() or vectors.dim() < 1:
        raise LearnscopeError("inverse_participation_ratio: vectors must be a floating-point torch.Tensor [..., n]")
    x = vectors.double()
    spectrum = (torch.fft.rfft(x, dim=-1) if transform == "rfft" else torch.fft.fft(x, dim=-1)).abs()
    norm = spectrum.square().sum(-1, keepdim=True).sqrt()
    ratio = (spectrum / norm.clamp(min=torch.finfo(torch.float64).tiny)).pow(2 * r).sum(-1)
    return torch.where(norm.squeeze(-1) > 0, ratio, torch.zeros_like(ratio))


def operand_weights(model: MLPNetwork, operands: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, V, W), each [S, N, p] with p = `operands`: per hidden neuron, its
    effective input weights for the tokens 0..p-1 at positions 0 and 1 (the
    embedding times its first-layer block) and its readout over the classes."""
    first = model.hidden[0].weight.detach()  # [S, T * e, N]
    w = model.head.weight.detach()  # [S, N, C]
    if model.one_hot_vocab is not None:  # one-hot operands: the blocks of the first layer are U and V
        vocab = model.one_hot_vocab
        return first[:, :operands].transpose(1, 2), first[:, vocab : vocab + operands].transpose(1, 2), w
    assert model.embedding is not None  # checked: token inputs
    embed = model.embedding.weight[:, :operands].detach()  # [S, p, e]
    e = embed.shape[-1]
    u = torch.bmm(embed, first[:, :e]).transpose(1, 2)
    v = torch.bmm(embed, first[:, e : 2 * e]).transpose(1, 2)
    return u, v, w


def neuron_ipr(model: MLPNetwork, operands: int, r: int = 2, transform: Transform = "rfft") -> torch.Tensor:
    """[S, N]: each hidden neuron's IPR, the mean of its U, V and W IPRs (float64)."""
    return sum(inverse_participation_ratio(x, r, transform) for x in operand_weights(model, operands)) / 3


def check_periodic_mlp(info: TaskInfo, model: EnsembleModel, path: str, probe: str) -> None:
    """Refuse a model or task whose neurons have no operand weights to transform."""
    token_inputs = isinstance(model, MLPNetwork) and (model.embedding is not None or model.one_hot_vocab is not None)
    if not isinstance(model, MLPNetwork) or not token_inputs or len(model.hidden) != 1:
        raise SpecError(path, f"{probe} reads the operand weights of an 'mlp' with one hidden layer and token "
                        "inputs (modular-arithmetic); this model is not one")
    if info.input_shape[0] < 2 or (info.vocab_size or 0) < info.output_dim:
        raise SpecError(path, f"{probe} needs token inputs whose first two positions are operands 0..C-1 (C "
                        "the classes), as modular-arithmetic's")


class _IPRProbe(Probe):
    r: int = Field(2, ge=1, description="the IPR's power: sum of |x~|^(2r) over ||x~||_2^(2r) (the paper: 2)")
    transform: Transform = Field("rfft", description="rfft: the one-sided real FFT of the authors' code; fft: "
                                 "the full complex DFT (a flat spectrum scores 1/p)")

    def ipr(self, ctx: ProbeContext) -> torch.Tensor:
        assert isinstance(ctx.model, MLPNetwork)  # checked
        return neuron_ipr(ctx.model, ctx.info.output_dim, self.r, self.transform)


@registry.probes.register("fourier_ipr")
class FourierIPR(_IPRProbe):
    """Per-neuron IPR of the Fourier spectrum of the hidden neurons' weights
    (Doshi et al., Eq. 3-4; see the module): `fourier_ipr/mean`, the mean over
    neurons (their IPR-bar), and `fourier_ipr/periodic`, the share of neurons
    whose IPR is at least `level`."""

    level: float = Field(0.5, gt=0, le=1, description="the IPR at which a neuron counts as periodic")

    def check(self, info, model, path):
        check_periodic_mlp(info, model, path, "fourier_ipr")

    def metric_names(self, info):
        return ["fourier_ipr/mean", "fourier_ipr/periodic"]

    def measure(self, ctx):
        ipr = self.ipr(ctx)
        return {"fourier_ipr/mean": ipr.mean(1), "fourier_ipr/periodic": (ipr >= self.level).double().mean(1)}


def pruned_units(ipr: torch.Tensor, count: int, order: Literal["lowest", "highest"] = "lowest") -> torch.Tensor:
    """[S, N] bool: per seed, the `count` neurons of lowest (or highest) IPR
    (ties: the lower index first), of ipr [S, N]."""
    ranked = torch.argsort(ipr if order == "lowest" else -ipr, dim=1, stable=True)[:, :count]
    chosen = torch.zeros_like(ipr, dtype=torch.bool)
    return chosen.scatter_(1, ranked, True)


@registry.probes.register("ipr_pruning")
class IPRPruning(_IPRProbe):
    """Accuracy on each split with a `fraction` of the hidden neurons pruned,
    those of lowest IPR first (`order: highest`: most periodic first), per
    seed: `ipr_pruning/{split}`. Doshi et al. (Section 2.1, Figure 6) prune
    the lowest-IPR neurons of a network that memorized corrupted labels:
    accuracy on them falls while test accuracy stays or rises. A pruned
    neuron's activation is zeroed in the forward pass; the model is not
    changed. It costs one forward pass per split."""

    fraction: float = Field(0.5, gt=0, le=1, description="share of the hidden neurons pruned (rounded)")
    order: Literal["lowest", "highest"] = Field("lowest", description="prune the neurons of lowest IPR first, "
                                                "or of highest")
    splits: list[str] | None = Field(None, description="splits measured; all of the task's when omitted")

    def _splits(self, info: TaskInfo) -> list[str]:
        return list(self.splits) if self.splits is not None else list(info.splits)

    def check(self, info, model, path):
        needs_one_label_per_example(info, path, "ipr_pruning")
        check_periodic_mlp(info, model, path, "ipr_pruning")
        check_splits(self._splits(info), info, f"{path}.splits")

    def metric_names(self, info):
        return [f"ipr_pruning/{split}" for split in self._splits(info)]

    def measure(self, ctx):
        ipr = self.ipr(ctx)
        count = int(round(self.fraction * ipr.shape[1]))
        keep = (~pruned_units(ipr, count, self.order)).unsqueeze(1)  # [S, 1, N]
        metrics = {}
        for split in self._splits(ctx.info):
            x, targets = ctx.trainer.data.splits[split]
            outputs, _ = ctx.run(x, {"hidden.0": lambda h: h * keep.to(h.dtype)})
            metrics[f"ipr_pruning/{split}"] = example_accuracy(ctx.info, outputs, targets).mean(1)
        return metrics
