"""The linear probe against scikit-learn's StandardScaler + RidgeClassifier, seed by seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeClassifier

from learnscope.errors import SpecError
from learnscope.models.base import Sites
from learnscope.probes.base import ProbeContext
from learnscope.probes.linear_probe import LinearProbe, ridge_classifier, standardized
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer


def by_hand(fit: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """The source prober's standardization: the fit split's mean and sample std, a constant feature unscaled."""
    std = fit.std(0, ddof=1)
    std = np.where(std < 1e-12, 1.0, std)
    return [(x - fit.mean(0)) / std for x in (fit, *others)]


def test_the_ridge_readout_is_scikit_learns():
    gen = torch.Generator().manual_seed(0)
    fit = torch.randn(3, 80, 5, generator=gen, dtype=torch.float64)
    test = torch.randn(3, 40, 5, generator=gen, dtype=torch.float64)
    fit[..., 2] = 7.0
    labels = torch.randint(0, 4, (3, 80), generator=gen)
    scaled_fit, scaled_test = standardized(fit, test)
    weights, intercept = ridge_classifier(scaled_fit, labels, 4, ridge=0.5)
    for s in range(3):
        x_fit, x_test = by_hand(fit[s].numpy(), test[s].numpy())
        np.testing.assert_allclose(scaled_fit[s].numpy(), x_fit, rtol=1e-12)
        clf = RidgeClassifier(alpha=0.5).fit(x_fit, labels[s].numpy())
        np.testing.assert_allclose(weights[s].numpy(), clf.coef_.T, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(intercept[s, 0].numpy(), clf.intercept_, rtol=1e-8, atol=1e-12)
        ours = (scaled_test[s] @ weights[s] + intercept[s]).argmax(-1).numpy()
        assert (ours == clf.predict(x_test)).all()


def test_the_probe_measures_what_sklearn_measures_on_the_site():
    trainer = Trainer(Experiment.model_validate({
        "task": {"name": "gaussian-mixture", "classes": 3, "dim": 6, "samples": 120, "test_samples": 60},
        "model": {"name": "mlp", "hidden": [16]}, "recipe": {"steps": 5},
        "probes": [{"name": "linear_probe", "site": "hidden.0", "ridge": 2.0}], "seeds": [0, 1]}))
    probe = trainer.experiment.probes[0]
    assert isinstance(probe, LinearProbe)
    got = probe.measure(ProbeContext(trainer, 0, probe.needs(trainer.info)))["linear_probe/hidden.0/test"]
    for s in range(2):
        feats = {}
        for split in ("train", "test"):
            x, y = trainer.data.splits[split]
            sites = Sites(read=["hidden.0"])
            with torch.no_grad():
                trainer.model(x, sites)
            feats[split] = (sites.acts["hidden.0"][s].double().numpy(), y[s].numpy())
        fit, fit_y = feats["train"]
        test, test_y = feats["test"]
        x_fit, x_test = by_hand(fit, test)
        clf = RidgeClassifier(alpha=2.0).fit(x_fit, fit_y)
        assert got[s].item() == pytest.approx((clf.predict(x_test) == test_y).mean())


def test_bad_probe_specs_are_one_line():
    with pytest.raises(SpecError, match=r"probes\[0\]\.site: unknown site 'nowhere'"):
        Trainer(Experiment.model_validate({"task": {"name": "digits"}, "model": {"name": "mlp", "hidden": [8]},
                                           "probes": [{"name": "linear_probe", "site": "nowhere"}], "seeds": 1}))
    with pytest.raises(SpecError, match="unknown split 'valid'"):
        Trainer(Experiment.model_validate({"task": {"name": "digits"}, "model": {"name": "mlp", "hidden": [8]},
                                           "probes": [{"name": "linear_probe", "fit_split": "valid"}], "seeds": 1}))
