"""Sites that read and write: the transformer's per-layer and per-head sites,
edits that change only what they should (an ablated head's output, nothing
upstream of it, no other head), the `ablate` and `patch` interventions
(their values, schedule and seeds; in training and in the probes' passes),
ensembles with per-seed edits and deeper transformers equal to single runs,
and `learnscope sites`."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from learnscope.cli import main
from learnscope.errors import SpecError
from learnscope.models.base import Sites
from learnscope.probes.base import Needs, ProbeContext
from learnscope.spec import Experiment
from learnscope.train.passes import PassPlan
from learnscope.train.trainer import Trainer

TASK = {"name": "modular-arithmetic", "p": 11, "train_fraction": 0.5}  # 60 train, 61 test examples
MODEL = {"name": "transformer", "layers": 2, "d_model": 16, "heads": 4, "d_mlp": 24}
RECIPE = {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 1.0, "steps": 20, "probe_every": 5,
          "probe_log_points": 0}


def trainer(interventions=(), seeds=(0, 1, 2), model=MODEL, recipe=RECIPE, task=TASK) -> Trainer:
    return Trainer(Experiment.model_validate({
        "task": task, "model": model, "recipe": recipe, "seeds": list(seeds),
        "interventions": list(interventions), "probes": ["accuracy", "loss"]}))


def run_sites(tr: Trainer, x: torch.Tensor, edited: bool, examples: slice | None = None) -> dict[str, torch.Tensor]:
    """Every site's activation on x, with the trainer's edits of this step or without."""
    edits = tr.site_edits(slice(0, tr.members), examples or slice(0, x.shape[1])) if edited else {}
    sites = Sites(read=tr.model.site_names(), edits=edits)
    with torch.no_grad():
        sites.acts["output"] = tr.model(x, sites)
    return sites.acts


# ---------------------------------------------------------------- learnscope sites


def test_sites_command_lists_the_transformers_per_head_sites(tmp_path, capsys):
    spec = tmp_path / "deep.yaml"
    spec.write_text(json.dumps({"task": TASK, "model": {**MODEL, "layers": 3, "attn_only": True}, "seeds": 2}))
    assert main(["sites", str(spec)]) == 0
    out = capsys.readouterr().out
    for site in ("resid_pre.2", "q.2", "k.2", "v.2", "attn.2", "head_out.2", "resid.2", "penultimate", "logits"):
        assert f" {site} " in out, site
    assert "mlp.0" not in out  # attention-only
    assert main(["sites", str(spec), "--json"]) == 0
    (listing,) = json.loads(capsys.readouterr().out.splitlines()[-1])
    shapes = {site: tuple(entry["shape"]) for site, entry in listing["sites"].items()}
    assert shapes["attn.1"] == (4, 3, 3) and listing["sites"]["attn.1"]["head_axis"] == 0  # [H, T, T]
    assert shapes["head_out.1"] == shapes["q.0"] == (3, 4, 4) and listing["sites"]["q.0"]["head_axis"] == 1
    assert shapes["logits"] == (11,) and listing["sites"]["resid.0"]["head_axis"] is None


def test_sites_command_refuses_an_unknown_target_in_one_line(capsys):
    assert main(["sites", "no-such-thing"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither a phenomenon nor a spec file" in err


# ---------------------------------------------------------------- what an edit changes


def test_ablating_a_head_zeroes_its_output_and_nothing_upstream_or_beside_it():
    tr = trainer([{"name": "ablate", "site": "head_out.1", "heads": [2]}], model={**MODEL, "attn_only": True})
    x = tr.train_x
    clean, edited = run_sites(tr, x, False), run_sites(tr, x, True)
    assert torch.all(edited["head_out.1"][..., 2, :] == 0) and clean["head_out.1"][..., 2, :].abs().max() > 0
    others = [0, 1, 3]
    assert torch.equal(edited["head_out.1"][..., others, :], clean["head_out.1"][..., others, :])
    for site in ("embed", "resid_pre.0", "q.0", "head_out.0", "resid.0", "resid_pre.1", "q.1", "k.1", "v.1", "attn.1"):
        assert torch.equal(edited[site], clean[site]), site
    # downstream, the stream loses exactly that head's share of the output projection
    dh = 4
    proj = tr.model.blocks[1].proj.weight[:, 2 * dh : 3 * dh]  # [S, dh, D]: head 2's rows
    share = torch.einsum("sbtd,sde->sbte", clean["head_out.1"][..., 2, :], proj)
    torch.testing.assert_close(edited["resid.1"], clean["resid.1"] - share, rtol=1e-5, atol=1e-6)
    assert not torch.equal(edited["output"], clean["output"])


def test_ablating_units_of_an_mlp_hidden_site():
    tr = trainer([{"name": "ablate", "site": "mlp.0", "units": [0, 5]}])
    clean, edited = run_sites(tr, tr.train_x, False), run_sites(tr, tr.train_x, True)
    assert torch.all(edited["mlp.0"][..., [0, 5]] == 0)
    kept = [u for u in range(24) if u not in (0, 5)]
    assert torch.equal(edited["mlp.0"][..., kept], clean["mlp.0"][..., kept])
    assert torch.equal(edited["resid_pre.0"], clean["resid_pre.0"])


def test_mean_ablation_over_the_batch_and_over_a_reference_split():
    over_test = {"name": "ablate", "site": "resid.0", "mode": "mean", "reference": "test"}
    over_batch = {"name": "ablate", "site": "mlp.1", "units": [3], "mode": "mean"}
    upstream, both = trainer([over_test]), trainer([over_test, over_batch])
    assert both.interventions[1].whole_batches and not both.interventions[0].whole_batches
    x, x_test = both.train_x, both.data.splits["test"][0]
    reference = run_sites(both, x_test, False)["resid.0"].mean(1, keepdim=True)  # per seed and position
    edited, before = run_sites(both, x, True), run_sites(upstream, x, True)
    torch.testing.assert_close(edited["resid.0"], reference.expand_as(edited["resid.0"]))
    # the batch mean is over the batch's own activations, under the edit upstream of it
    want = before["mlp.1"][..., 3].mean(1, keepdim=True).expand_as(edited["mlp.1"][..., 3])
    torch.testing.assert_close(edited["mlp.1"][..., 3], want)
    assert torch.equal(edited["mlp.1"][..., :3], before["mlp.1"][..., :3])
    assert not torch.equal(before["mlp.1"], run_sites(upstream, x, False)["mlp.1"])


def test_the_schedule_and_the_seeds_of_an_edit():
    tr = trainer([{"name": "ablate", "site": "mlp.0", "seeds": [1, 7], "start": 2, "stop": 4}])
    x = tr.train_x
    for step in range(6):
        tr.step = step
        edits = tr.site_edits(slice(0, 3), slice(0, x.shape[1]))
        assert bool(edits) == (2 <= step < 4), step
        if edits:
            edited, clean = run_sites(tr, x, True), run_sites(tr, x, False)
            assert torch.all(edited["mlp.0"][1] == 0) and clean["mlp.0"][1].abs().max() > 0
            assert torch.equal(edited["mlp.0"][[0, 2]], clean["mlp.0"][[0, 2]])
    # a pass over a group of seeds without seed 1 edits nothing, but touches the site all the same
    # (the same computation whichever seeds share a pass)
    tr.step = 2
    (unchanged,) = tr.site_edits(slice(0, 1), slice(0, 4)).values()
    value = torch.randn(1, 4, 3, 24)
    assert unchanged(value) is value


def test_the_probes_measure_the_edited_model():
    tr = trainer([{"name": "ablate", "site": "head_out.0", "heads": [0, 1], "stop": 1}])
    x_test = tr.data.splits["test"][0]
    ctx = ProbeContext(tr, 0, Needs(outputs={"test": None}))
    with torch.no_grad():
        edited = tr.model(x_test, Sites(edits=tr.site_edits(slice(0, 3), slice(0, x_test.shape[1]))))
    assert torch.equal(ctx.outputs("test"), edited) and not torch.allclose(edited, tr.model(x_test))
    tr.step = 1  # the edit has ended
    assert torch.equal(ProbeContext(tr, 1, Needs(outputs={"test": None})).outputs("test"), tr.model(x_test))


def test_patch_takes_the_activation_recorded_on_the_source_split():
    tr = trainer([{"name": "patch", "site": "head_out.0", "heads": [1], "source": "test"}])
    x, x_test = tr.train_x, tr.data.splits["test"][0]
    n_test = x_test.shape[1]
    source = run_sites(tr, x_test, False)["head_out.0"]
    # a pass over the batch's examples 50..59 takes test examples 50..59 mod 61; from 55 on, 0..
    part = slice(50, 60)
    edited = run_sites(tr, x[:, part], True, examples=slice(50, 60))
    clean = run_sites(tr, x[:, part], False)
    paired = torch.arange(50, 60) % n_test
    assert torch.equal(edited["head_out.0"][..., 1, :], source[:, paired][..., 1, :])
    assert torch.equal(edited["head_out.0"][..., [0, 2, 3], :], clean["head_out.0"][..., [0, 2, 3], :])
    assert not torch.equal(edited["output"], clean["output"])
    # with more examples than the source, pairing wraps around
    wide = torch.cat([x_test, x_test[:, :5]], dim=1)
    wrapped = run_sites(tr, wide, True)
    assert torch.equal(wrapped["head_out.0"][:, n_test:], source[:, :5])
    # probing the source split itself, the patch changes nothing
    ctx = ProbeContext(tr, 0, Needs(outputs={"test": None}))
    torch.testing.assert_close(ctx.outputs("test"), tr.model(x_test), rtol=0, atol=0)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("edit,match", [
    ({"name": "ablate", "site": "mlp.7"}, r"interventions\[0\]\.site: unknown site 'mlp.7'; valid: .*head_out\.0"),
    ({"name": "ablate", "site": "mlp.0", "heads": [0]}, r"interventions\[0\]\.heads: site 'mlp.0' has no head axis"),
    ({"name": "ablate", "site": "attn.0", "heads": [4]}, r"interventions\[0\]\.heads: 4 is out of range.* 4 heads"),
    ({"name": "ablate", "site": "mlp.0", "units": [24]}, r"units: 24 is out of range"),
    ({"name": "patch", "site": "mlp.0", "source": "nope"}, r"interventions\[0\]\.source: unknown split 'nope'"),
    ({"name": "ablate", "site": "mlp.0", "reference": "test"}, r"reference: .*applies to mode mean"),
    ({"name": "ablate", "site": "mlp.0", "start": 5, "stop": 5}, r"stop: .*after start"),
])
def test_a_bad_site_edit_is_one_error_line(edit, match):
    with pytest.raises(SpecError, match=match) as exc:
        trainer([edit])
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------- ensembles equal single runs


def train(interventions, seeds, model=MODEL, grouped=False):
    tr = trainer(copy.deepcopy(interventions), seeds, model)
    if grouped:  # one seed per pass, as large models train: edits see a group's members
        tr.plan = PassPlan(seeds=1, examples=tr.plan.examples)
    record = {}
    tr.run(on_probe=lambda step, metrics: record.update({step: {k: v.clone() for k, v in metrics.items()}}))
    return tr, record


def assert_members_equal_single_runs(interventions, seeds, model=MODEL, grouped=False):
    ensemble, ens_record = train(interventions, seeds, model, grouped)
    for k, seed in enumerate(seeds):
        single, record = train(interventions, [seed], model)
        for step, metrics in record.items():
            for name, value in metrics.items():
                torch.testing.assert_close(ens_record[step][name][k], value[0], rtol=1e-5, atol=1e-7,
                                           msg=f"seed {seed}, step {step}, {name}")
        for p_ens, p_single in zip(ensemble.params, single.params):
            torch.testing.assert_close(p_ens[k], p_single[0], rtol=1e-5, atol=1e-6)
    return ensemble


EDITS = [
    {"name": "ablate", "site": "head_out.0", "heads": [0], "seeds": [0, 2], "start": 5, "stop": 15},
    {"name": "ablate", "site": "mlp.1", "units": [1, 2], "mode": "mean", "seeds": [1], "start": 10},
    {"name": "patch", "site": "resid.0", "units": [0, 1], "source": "test", "seeds": [1, 2], "stop": 10},
]


@pytest.mark.parametrize("grouped", [False, True], ids=["one-pass", "seed-groups"])
def test_an_ensemble_with_per_seed_edits_equals_single_runs(grouped):
    ensemble = assert_members_equal_single_runs(EDITS, [0, 1, 2], grouped=grouped)
    if not grouped:  # and the edits changed training
        plain, _ = train([], [0, 1, 2])
        for k in range(3):
            assert not torch.allclose(plain.params[0][k], ensemble.params[0][k])


def test_a_deeper_attention_only_transformer_with_qk_layernorm_equals_single_runs():
    deep = {"name": "transformer", "layers": 4, "d_model": 16, "heads": 2, "d_mlp": 8, "attn_only": True,
            "qk_layernorm": True}
    ensemble = assert_members_equal_single_runs([], [0, 1, 2], deep)
    names = [n for n, _ in ensemble.model.named_parameters()]
    assert not any("fc_" in n or "ln_mlp" in n for n in names) and sum("ln_q" in n for n in names) == 8
    # queries and keys are layernormed per head (unit weight, zero bias at the start)
    fresh = trainer(seeds=[0], model=deep)
    acts = run_sites(fresh, fresh.train_x, False)
    for site in ("q.3", "k.0"):
        torch.testing.assert_close(acts[site].mean(-1), torch.zeros(acts[site].shape[:-1]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("query_position", [-1, 1])
def test_the_query_position_shortcut_matches_the_full_pass(query_position):
    model = {**MODEL, "qk_layernorm": True, "query_position": query_position}
    tr = trainer(seeds=[0, 1], model=model)
    x = tr.train_x
    with torch.no_grad():
        shortcut = tr.model(x)
        full = tr.model(x, Sites(read=["q.1"]))  # a site of the final block read: every position computed
    torch.testing.assert_close(shortcut, full, rtol=1e-5, atol=1e-6)
    if query_position == 1:  # causal: what follows the query position does not reach the readout
        later = x.clone()
        later[..., 2] = (later[..., 2] + 1) % 11
        torch.testing.assert_close(tr.model(later), shortcut, rtol=0, atol=0)


def test_resume_with_a_site_edit_is_exact():
    straight, _ = train(EDITS[:2], [0, 1, 2])
    first = trainer(copy.deepcopy(EDITS[:2]), recipe={**RECIPE, "steps": 20})
    while first.step < 8:
        first.train_step()
    tensors, meta = first.state()
    resumed = trainer(copy.deepcopy(EDITS[:2]))
    resumed.load_state(tensors, meta)
    resumed.run()
    for a, b in zip(straight.params, resumed.params):
        assert torch.equal(a, b)
