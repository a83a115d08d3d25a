"""Activation sparsity ("The Lazy Neuron Phenomenon: On Emergence of
Activation Sparsity in Transformers", Li et al. 2023).

Li et al. measure the activation map after the ReLU of each MLP block, and
report, per input (per token for a transformer), the percentage of its
entries that are nonzero; their sparsity is that percentage being small.
`activation_sparsity` records the complement, the share of ZERO entries, so
that "sparsity rises" reads as the number rising: per seed, the share of a
site's entries with |a| <= eps over the examples measured (every token
position of every example for a sequence site), which is 1 minus the mean
over inputs (tokens) of the paper's share of nonzero entries, since every
input has the same number of entries. `eps` 0 (the default) counts exact
zeros, what a ReLU outputs; a small positive `eps` counts near-zero
activations of a smooth activation (GELU, SiLU), which has no exact zeros.

Sites: any site of the model; the paper's are an MLP's `hidden.{i}` and a
transformer's `mlp.{l}` (both after the activation).

`inputs` says what the model reads:
- `data`: the first `max_examples` examples of `split`;
- `random`: as many random inputs, drawn afresh at every probe step from
  the same generator (per seed, derived from the run's seed, so every probe
  step and every run reads the same inputs), with the split's statistics:
  for vector inputs each feature Gaussian with that feature's mean and std
  over those examples of the split (per seed, as each seed has its own
  data); for token inputs each token uniform over the vocabulary. Li et al.
  find sparsity on training and evaluation data; random inputs tell
  sparsity that the training distribution evokes from sparsity the weights
  impose on anything.

Metrics: `activation_sparsity/SITE/SPLIT` on data, `activation_sparsity/
SITE/random` on random inputs (a `label` tells apart random entries matched
to other splits), [S] each, float64.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import LearnscopeError
from learnscope.probes.base import Needs, Probe, ProbeContext, check_splits, check_tensors
from learnscope.seeding import generator


def zero_share(activations: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Per seed, the share of the entries of activations [S, N, ...] with
    |a| <= eps (exact zeros at eps 0): [S], float64."""
    if not isinstance(activations, torch.Tensor) or activations.dim() < 2:
        got = tuple(activations.shape) if isinstance(activations, torch.Tensor) else type(activations).__name__
        raise LearnscopeError(f"zero_share: activations must be a torch.Tensor [S, N, ...]; got {got}")
    flat = activations.reshape(activations.shape[0], -1)
    check_tensors("zero_share", {"activations": (flat, "[S, E]", "floating")})
    if not eps >= 0:  # also refuses nan
        raise LearnscopeError(f"zero_share: eps must be >= 0; got {eps!r}")
    if flat.shape[1] == 0:
        raise LearnscopeError("zero_share: activations hold no entries")
    return (flat.abs() <= eps).sum(1).double() / flat.shape[1]  # counted exactly, then one division


def random_inputs(x: torch.Tensor, kind: str, vocab_size: int | None, seeds: list[int], stream: str) -> torch.Tensor:
    """Random inputs shaped like x [S, m, ...], seed k's from its own generator
    (seeds[k], stream): Gaussian with x's per-feature mean and std over its
    examples (vectors), or tokens uniform over the vocabulary."""
    draws = []
    for k, seed in enumerate(seeds):
        gen = generator(seed, "probe", "activation_sparsity", stream)
        if kind == "tokens":
            assert vocab_size is not None  # a token task names its vocabulary
            draws.append(torch.randint(0, vocab_size, x.shape[1:], generator=gen).to(x.device))
        else:
            member = x[k].double()
            noise = torch.randn(member.shape, generator=gen, dtype=torch.float64).to(x.device)
            mean, std = member.mean(0, keepdim=True), member.std(0, correction=0, keepdim=True)
            draws.append((mean + std * noise).to(x.dtype))
    return torch.stack(draws)


@registry.probes.register("activation_sparsity")
class ActivationSparsity(Probe):
    """The share of zero (|a| <= eps) activations at a site, per seed, on a
    split's examples or on random inputs with its statistics (see the module)."""

    site: str = Field(description="the site to read, after an activation: an MLP's hidden.{i}, a "
                      "transformer's mlp.{l}")
    split: str = Field("train", min_length=1, description="the split measured, or whose statistics the "
                       "random inputs take")
    inputs: Literal["data", "random"] = Field("data", description="the split's examples, or random inputs "
                                              "matched to it")
    eps: float = Field(0.0, ge=0, description="entries with |a| <= eps count as zero (0: exact zeros)")
    max_examples: int = Field(2048, ge=1, description="examples measured (the split's first ones), or random "
                              "inputs drawn")

    def check(self, info, model, path):
        check_splits([self.split], info, f"{path}.split")
        model.check_sites([self.site], f"{path}.site")

    def needs(self, info):
        if self.inputs == "random":
            return Needs()  # its own forward pass, on inputs of its own
        return Needs(sites={self.split: {self.site}}, site_examples={self.split: self.max_examples})

    def metric_name(self) -> str:
        return f"activation_sparsity/{self.site}/{'random' if self.inputs == 'random' else self.split}"

    def metric_names(self, info):
        return [self.metric_name()]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        if self.inputs == "data":
            acts = ctx.activations(self.split, self.site, self.max_examples)
        else:
            x = ctx.trainer.data.splits[self.split][0][:, : self.max_examples]
            noise = random_inputs(x, ctx.info.input_kind, ctx.info.vocab_size, ctx.trainer.seeds, self.split)
            _, sites = ctx.run(noise, read={self.site}, read_examples=noise.shape[1])
            acts = sites[self.site]
        return {self.metric_name(): zero_share(acts, self.eps)}
