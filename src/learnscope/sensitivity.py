"""Learning-rate sensitivity, as Wortsman et al. define it ("Small-scale
proxies for large-scale Transformer training instabilities", section 2.2):
the mean, over a swept range of learning rates, of how far the final loss
lands above the best one, each loss first capped at the loss at
initialization,

    LR sensitivity = E_eta [ min(l(eta), l0) - l* ],   l* = min_eta l(eta).

The cap makes a run that diverged, or ended worse than where it began, cost
exactly l0 - l*, however far it went; so a run whose loss is not finite
(NaN, inf, a seed the trainer froze as diverged) counts as l0. The mean is
over the swept points as given: sweep them evenly in log(eta), as the
source does (3e-4 to 3e-1), for the mean to be over orders of magnitude.
Per seed: l0, l(eta) and l* are that seed's.
"""

from __future__ import annotations

import numpy as np


def lr_sensitivity(final: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Per seed [S], from the final losses `final` [L, S] at L learning rates and
    the losses at initialization `initial` ([S], or [L, S]: each run's own).
    A seed with no finite loss at any learning rate has none (NaN)."""
    losses = np.asarray(final, dtype=float)
    if losses.ndim != 2 or losses.shape[0] < 2:
        raise ValueError(f"LR sensitivity needs final losses at two or more learning rates, [L, S]; got shape "
                         f"{losses.shape}")
    start = np.broadcast_to(np.asarray(initial, dtype=float), losses.shape)
    capped = np.where(np.isfinite(losses), np.minimum(losses, start), start)
    finite = np.isfinite(losses)
    best = np.min(np.where(finite, losses, np.inf), axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(finite.any(axis=0), capped.mean(axis=0) - best, np.nan)
