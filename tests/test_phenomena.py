"""Every phenomenon's signature at --quick size, through the same path as
`learnscope verify NAME --quick`; and the signature re-checked from the
store alone gives the same verdict."""

from __future__ import annotations

import json

import pytest

from learnscope import registry
from learnscope.runner import check_signature, run_phenomenon
from learnscope.store import Store

PHENOMENA = registry.phenomena.names()


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


def test_every_phenomenon_declares_itself():
    for name in PHENOMENA:
        cls = registry.phenomena.get(name)
        assert cls.summary and cls.source, name
        assert 0 < cls.required_share <= 1, name
        quick, full = cls().arms(quick=True), cls().arms(quick=False)
        assert quick.keys() == full.keys() and len(quick) >= 1, name
        for arm in quick:
            assert quick[arm].recipe.steps <= full[arm].recipe.steps, (name, arm)
