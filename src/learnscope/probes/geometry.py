"""Geometry of representations at a site: effective rank, neural collapse,
feature-label kernel alignment. Computed for all seeds in batched calls,
in float64 whatever the inputs' precision: the quantities involve small
eigenvalues, and a pseudo-inverse in float32 inverts rounding noise (NC1 of
1.8e10 on float32 features where float64 gives 0.78). The public functions
check their arguments' shapes and dtypes and refuse bad ones in one line."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from learnscope import registry
from learnscope.errors import LearnscopeError, SpecError
from learnscope.probes.base import (
    Needs,
    Probe,
    ProbeContext,
    check_splits,
    check_tensors,
    needs_one_label_per_example,
)


class _SiteProbe(Probe):
    site: str = "penultimate"
    split: str = "test"
    max_examples: int = Field(2048, ge=2, description="examples of the split used (the first ones)")

    def check(self, info, model, path):
        check_splits([self.split], info, f"{path}.split")
        model.check_sites([self.site], f"{path}.site")

    def needs(self, info):
        return Needs(sites={self.split: {self.site}}, site_examples={self.split: self.max_examples})

    def features(self, ctx: ProbeContext) -> tuple[torch.Tensor, torch.Tensor]:
        feats, targets = ctx.features(self.split, self.site, self.max_examples)
        return feats.double(), targets


def effective_rank(features: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """RankMe: exp of the entropy of the normalized singular values of
    features [S, N, D], per seed: [S] (float64)."""
    check_tensors("effective_rank", {"features": (features, "[S, N, D]", "floating")})
    sigma = torch.linalg.svdvals(features.double())
    p = sigma / sigma.sum(-1, keepdim=True) + eps
    return torch.exp(-(p * p.log()).sum(-1))


@registry.probes.register("effective_rank")
class EffectiveRank(_SiteProbe):
    """RankMe (Garrido et al.) of the [examples x features] activation matrix."""

    def metric_names(self, info):
        return [f"effective_rank/{self.site}"]

    def measure(self, ctx):
        return {f"effective_rank/{self.site}": effective_rank(self.features(ctx)[0])}


def neural_collapse(
    features: torch.Tensor, labels: torch.Tensor, readout: torch.Tensor, logits: torch.Tensor, classes: int
) -> dict[str, torch.Tensor]:
    """NC1-NC4 of Papyan, Han & Donoho (2020), per seed.

    features [S, N, D], labels [S, N], readout [S, C, D], logits [S, N, C].
    nc1: tr(Sigma_W Sigma_B^+) / C, within-class variability relative to between.
    nc2: || G/||G||_F - (I - 11'/C)/sqrt(C-1) ||_F with G the Gram matrix of
         the centered class means: distance to a simplex ETF.
    nc3: || W/||W||_F - M'/||M||_F ||_F^2: classifier vs centered means (self-duality).
    nc4: share of examples where the network's prediction equals the
         nearest-class-center prediction (agreement; 1 at collapse).
    Classes absent from the examples are left out of every term. Computed in
    float64 (features and readout of any floating dtype are cast); [S] each.
    """
    check_tensors("neural_collapse", {
        "features": (features, "[S, N, D]", "floating"), "labels": (labels, "[S, N]", "integer"),
        "readout": (readout, "[S, C, D]", "floating"), "logits": (logits, "[S, N, C]", "floating"),
    })
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise LearnscopeError(f"neural_collapse: classes must be a positive integer; got {classes!r}")
    if readout.shape[1] != classes:
        raise LearnscopeError(f"neural_collapse: readout has C = {readout.shape[1]} rows but classes = {classes}")
    if features.shape[1] == 0:
        raise LearnscopeError("neural_collapse: features hold no examples (N = 0)")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise LearnscopeError(f"neural_collapse: labels must lie in 0..{classes - 1}; got {low}..{high}")
    features, readout, labels = features.double(), readout.double(), labels.long()
    # Centre first: with a large common offset, class means minus the global
    # mean would lose the structural zero of sum_c n_c (mu_c - mu_G) to
    # rounding, and the pseudo-inverse below would keep that direction.
    features = features - features.mean(1, keepdim=True)
    onehot = F.one_hot(labels, classes).to(features.dtype)  # [S, N, C]
    counts = onehot.sum(1)  # [S, C]
    present = counts > 0
    means = (onehot.transpose(1, 2) @ features) / counts.clamp(min=1).unsqueeze(-1)  # [S, C, D]
    global_mean = features.mean(1, keepdim=True)  # [S, 1, D]
    centered_means = (means - global_mean) * present.unsqueeze(-1)  # [S, C, D]; absent rows zero
    within = features - torch.gather(means, 1, labels.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
    n_present = present.sum(1).to(features.dtype)  # [S]

    # Sigma_B = M'M / C_present (M: [C, D] centered means) so Sigma_B^+ = C_present (M^+)(M^+)',
    # and tr(Sigma_W Sigma_B^+) = C_present / N * ||within @ M^+||_F^2, avoiding a D x D pseudo-inverse.
    pinv = torch.linalg.pinv(centered_means, rtol=1e-10)  # [S, D, C]
    projected = within @ pinv  # [S, N, C]
    nc1 = projected.square().sum((1, 2)) / features.shape[1]  # times C_present / C_present

    gram = centered_means @ centered_means.transpose(1, 2)  # [S, C, C]
    mask = (present.unsqueeze(-1) & present.unsqueeze(-2)).to(features.dtype)
    eye = torch.eye(classes, dtype=features.dtype, device=features.device)
    etf = (eye - 1 / n_present.view(-1, 1, 1)) * mask
    etf = etf / (n_present - 1).clamp(min=1).sqrt().view(-1, 1, 1)
    nc2 = torch.linalg.matrix_norm(gram / torch.linalg.matrix_norm(gram).view(-1, 1, 1) - etf)

    weights = readout.to(features.dtype) * present.unsqueeze(-1)
    nc3 = torch.linalg.matrix_norm(
        weights / torch.linalg.matrix_norm(weights).view(-1, 1, 1)
        - centered_means / torch.linalg.matrix_norm(centered_means).view(-1, 1, 1)
    ).square()

    distances = torch.cdist(features, means)  # [S, N, C]
    distances = distances.masked_fill(~present.unsqueeze(1), float("inf"))
    nearest = distances.argmin(-1)
    nc4 = (nearest == logits.argmax(-1)).to(features.dtype).mean(1)
    return {"nc1": nc1, "nc2": nc2, "nc3": nc3, "nc4": nc4}


@registry.probes.register("neural_collapse")
class NeuralCollapse(_SiteProbe):
    """NC1-NC4 at the penultimate site (the one the classifier reads)."""

    site: str = "penultimate"
    split: str = "train"

    def check(self, info, model, path):
        needs_one_label_per_example(info, path, "neural_collapse")
        if self.site != "penultimate":
            raise SpecError(f"{path}.site", "neural_collapse reads the classifier's input; valid: penultimate")
        super().check(info, model, path)

    def needs(self, info):
        needs = super().needs(info)
        needs.outputs[self.split] = self.max_examples
        return needs

    def metric_names(self, info):
        return ["nc1", "nc2", "nc3", "nc4"]

    def measure(self, ctx):
        features, labels = self.features(ctx)
        logits = ctx.outputs(self.split, features.shape[1])
        return neural_collapse(features, labels, ctx.model.readout().detach(), logits, ctx.info.num_classes)


def kernel_alignment(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Centered kernel alignment between K = FF' and L = YY', per seed:
    <HKH, HLH>_F / (||HKH||_F ||HLH||_F), H the centering matrix.
    With centered columns this is ||F'Y||^2 / (||F'F|| ||Y'Y||), which needs
    no N x N matrix. features [S, N, D], targets [S, N, K]; [S] (float64)."""
    check_tensors("kernel_alignment", {"features": (features, "[S, N, D]", "floating"),
                                       "targets": (targets, "[S, N, K]", "floating")})
    f = features.double() - features.double().mean(1, keepdim=True)
    y = targets.double() - targets.double().mean(1, keepdim=True)
    cross = torch.linalg.matrix_norm(f.transpose(1, 2) @ y).square()
    return cross / (torch.linalg.matrix_norm(f.transpose(1, 2) @ f) * torch.linalg.matrix_norm(y.transpose(1, 2) @ y))


@registry.probes.register("kernel_alignment")
class KernelAlignment(_SiteProbe):
    """Centered alignment of the feature kernel at a site with the label
    kernel (one-hot labels for classification, targets for regression)."""

    def metric_names(self, info):
        return [f"kernel_alignment/{self.site}"]

    def check(self, info, model, path):
        if info.sequence:
            raise SpecError(path, "kernel_alignment needs one target per example; this task labels every "
                            "position of a sequence")
        super().check(info, model, path)

    def measure(self, ctx):
        features, targets = self.features(ctx)
        if ctx.info.is_classification:
            targets = F.one_hot(targets, ctx.info.num_classes)
        targets = targets.reshape(targets.shape[0], targets.shape[1], -1).to(features.dtype)
        return {f"kernel_alignment/{self.site}": kernel_alignment(features, targets)}
