"""Linear-probe accuracy of a site's features: how much of the labels a
linear readout of a representation recovers, the measure "Random Teachers
are Good Teachers" compares a student with its teacher by.

`linear_probe` fits, per seed, a linear classifier to the features of the
first `max_examples` examples of `fit_split` and reports its accuracy on
each split of `splits` (`linear_probe/{site}/{split}`). The features are
standardized with the fit split's mean and standard deviation (a constant
feature left as it is), as the source's prober does (`normalize`, after
scikit-learn's StandardScaler). The source then trains a logistic
regression with AdamW for a number of epochs; here the readout is the
ridge (least-squares) classifier, solved in closed form in float64: one
output per class, targets +1 for the class and -1 otherwise, an
unpenalized intercept, L2 penalty `ridge` on the weights, the prediction
the largest output, exactly scikit-learn's RidgeClassifier. A closed form
has no learning rate or epoch count for the measure to depend on.
"""

from __future__ import annotations

import torch
from pydantic import Field

from learnscope import registry
from learnscope.probes.base import Needs, Probe, ProbeContext, check_splits, needs_one_label_per_example


def standardized(fit: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Features [S, N, D] centred and scaled by the fit features' mean and
    (sample) standard deviation per seed and feature; a constant feature is not scaled."""
    mean = fit.mean(1, keepdim=True)
    std = fit.std(1, keepdim=True)
    std = torch.where(std < 10 * torch.finfo(std.dtype).eps, torch.ones_like(std), std)
    return [(x - mean) / std for x in (fit, *others)]


def ridge_classifier(features: torch.Tensor, labels: torch.Tensor, classes: int,
                     ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights [S, D, C], intercept [S, 1, C]) of the ridge classifier fit per
    seed to features [S, N, D] (float64) and labels [S, N]."""
    targets = torch.full((*labels.shape, classes), -1.0, dtype=features.dtype, device=features.device)
    targets.scatter_(-1, labels.unsqueeze(-1), 1.0)
    x_mean, y_mean = features.mean(1, keepdim=True), targets.mean(1, keepdim=True)
    x, y = features - x_mean, targets - y_mean
    gram = x.transpose(1, 2) @ x + ridge * torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    weights = torch.linalg.solve(gram, x.transpose(1, 2) @ y)
    return weights, y_mean - x_mean @ weights


@registry.probes.register("linear_probe")
class LinearProbe(Probe):
    """Per seed, the accuracy on each split of a ridge classifier fit to a site's standardized features."""

    site: str = Field("penultimate", description="a site of the model (`learnscope sites` lists them)")
    fit_split: str = Field("train", description="the split the readout is fit on")
    splits: list[str] = Field(["test"], min_length=1, description="the splits its accuracy is measured on")
    ridge: float = Field(1.0, gt=0, description="L2 penalty on the readout's weights (scikit-learn's alpha)")
    max_examples: int = Field(4096, ge=2, description="examples of each split used (the first ones)")

    def check(self, info, model, path):
        needs_one_label_per_example(info, path, "linear_probe")
        check_splits([self.fit_split, *self.splits], info, path)
        model.check_sites([self.site], f"{path}.site")

    def needs(self, info):
        splits = {self.fit_split, *self.splits}
        return Needs(sites={s: {self.site} for s in splits}, site_examples={s: self.max_examples for s in splits})

    def metric_names(self, info):
        return [f"linear_probe/{self.site}/{split}" for split in self.splits]

    def measure(self, ctx: ProbeContext) -> dict[str, torch.Tensor]:
        fit, fit_labels = ctx.features(self.fit_split, self.site, self.max_examples)
        measured = [ctx.features(split, self.site, self.max_examples) for split in self.splits]
        scaled = standardized(fit.double(), *(x.double() for x, _ in measured))
        weights, intercept = ridge_classifier(scaled[0], fit_labels.reshape(fit.shape[:2]), ctx.info.output_dim,
                                              self.ridge)
        metrics = {}
        for split, x, (_, labels) in zip(self.splits, scaled[1:], measured):
            predicted = (x @ weights + intercept).argmax(-1)
            correct = (predicted == labels.reshape(predicted.shape)).double().mean(1)
            metrics[f"linear_probe/{self.site}/{split}"] = correct.to(fit.dtype)
        return metrics
