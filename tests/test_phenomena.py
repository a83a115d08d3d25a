"""Every phenomenon's signature at --quick size, through the same path as
`learnscope verify NAME --quick`; and the signature re-checked from the
store alone gives the same verdict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from learnscope import registry
from learnscope.catalog.base import Arm
from learnscope.results import Threshold
from learnscope.runner import check_signature, run_phenomenon
from learnscope.store import Store

PHENOMENA = registry.phenomena.names()
# every phenomenon's --quick verdict line and measures, recorded by tests/make_quick_verdicts.py
REFERENCE = json.loads((Path(__file__).parent / "data" / "quick_verdicts.json").read_text())


def same_values(a: list, b: list) -> bool:
    """Equal lists of floats, NaN equal to NaN (JSON keeps floats exactly)."""
    def same(x, y):
        if x is None or y is None:
            return x is None and y is None
        return x == y or (math.isnan(x) and math.isnan(y))

    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


@pytest.mark.slow
@pytest.mark.parametrize("name", PHENOMENA)
def test_signature_holds_at_quick_size(name, tmp_path):
    store = Store(tmp_path / "store")
    run = run_phenomenon(name, quick=True, store=store)
    verdict = run.verdict
    assert run.status == "finished"
    assert verdict is not None
    assert verdict.ok, verdict.line(name)
    assert verdict.line(name).startswith(f"verified {name}: PASS (")
    again = check_signature(store, run.id)
    assert json.dumps(again.as_dict()) == json.dumps(verdict.as_dict())  # as text: NaN measures compare equal
    reference = REFERENCE[name]
    assert verdict.line(name) == reference["line"]
    assert set(verdict.measures) == set(reference["measures"])
    changed = [m for m, values in reference["measures"].items() if not same_values(verdict.measures[m], values)]
    assert not changed, f"{name}: measures differ from tests/data/quick_verdicts.json: {changed}"
    assert len(verdict.claims) >= 1 and all(len(c["holds"]) == len(verdict.seeds) for c in verdict.claims)


def test_the_reference_covers_every_phenomenon():
    assert set(PHENOMENA) == set(REFERENCE)


@pytest.mark.parametrize("name", PHENOMENA)
def test_declared_quick_ranges_hold_for_the_default_seeds(name):
    """A threshold's measured --quick range is data, held to the reference run:
    the default seeds' values of its measure lie inside it."""
    cls = registry.phenomena.get(name)
    measures = REFERENCE[name]["measures"]
    for threshold in cls.thresholds:
        if threshold.measure is None or "quick" not in threshold.measured:
            continue
        assert threshold.measure in measures, (name, threshold.name, threshold.measure)
        lo, hi = threshold.measured["quick"]
        slack = 5e-3 * max(abs(lo), abs(hi)) + 5e-4  # ranges are printed to 2-3 digits
        values = [v for v in measures[threshold.measure] if v is not None and math.isfinite(v)]
        outside = [v for v in values if not lo - slack <= v <= hi + slack]
        assert not outside, f"{name}: {threshold.name}'s measure {threshold.measure} {outside} outside {lo}..{hi}"


def test_every_phenomenon_declares_itself():
    for name in PHENOMENA:
        cls = registry.phenomena.get(name)
        assert cls.summary and cls.source, name
        assert 0 < cls.required_share <= 1, name
        quick = {a.name: a for a in cls().arms(quick=True)}
        full = {a.name: a for a in cls().arms(quick=False)}
        assert quick.keys() == full.keys() and len(quick) >= 1, name
        for arm in quick:
            assert isinstance(quick[arm], Arm), (name, arm)
            assert quick[arm].experiment.recipe.steps <= full[arm].experiment.recipe.steps, (name, arm)
            assert quick[arm].starts_from == full[arm].starts_from, (name, arm)
        assert all(isinstance(t, Threshold) for t in cls.thresholds), name
        assert len({t.name for t in cls.thresholds}) == len(cls.thresholds), name
