"""Hugging Face causal language models from a config (models.hf): a small
GPT-2 trains on `facts` as a seed ensemble whose member k is the single run
of seed k, its attention patterns are sites a probe reads, and a
save_pretrained directory loads through `path`. Nothing is downloaded."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch

from learnscope.errors import SpecError
from learnscope.models.base import Sites
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer

transformers = pytest.importorskip("transformers")

TASK = {"name": "facts", "retain_entities": 6, "forget_entities": 3, "holdout_entities": 3, "attributes": 2,
        "values": 4, "templates": 2}
GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 4}
PATTERN = "transformer.h.0.attn.pattern"
RAW = {"task": TASK, "model": {"name": "hf", "config": GPT2},
       "recipe": {"optimizer": "adamw", "lr": 3e-3, "steps": 6, "batch_size": 12, "probe_every": 3,
                  "probe_log_points": 0},
       "probes": [{"name": "loss", "splits": ["train", "test"]}, {"name": "accuracy", "splits": ["train"]},
                  {"name": "effective_rank", "site": PATTERN, "split": "train", "max_examples": 16}]}


def train(seeds: list[int], raw: dict = RAW) -> tuple[Trainer, dict[int, dict[str, np.ndarray]]]:
    trainer = Trainer(Experiment.model_validate({**copy.deepcopy(raw), "seeds": seeds}))
    record: dict[int, dict[str, np.ndarray]] = {}
    trainer.run(on_probe=lambda step, m: record.__setitem__(step, {k: v.double().numpy().copy() for k, v in m.items()}))
    return trainer, record


@pytest.fixture(scope="module")
def ensemble():
    return train([0, 1])


@pytest.mark.parametrize("k", [0, 1])
def test_a_member_of_a_gpt2_ensemble_is_the_single_run_of_its_seed(ensemble, k):
    trainer, record = ensemble
    single, alone = train([k])
    assert sorted(record) == sorted(alone) == [0, 3, 6]
    for step, metrics in alone.items():
        for name, value in metrics.items():
            np.testing.assert_allclose(record[step][name][k], value[0], rtol=1e-5, atol=1e-7, err_msg=f"{step} {name}")
    for p_ens, p_single in zip(trainer.params, single.params):
        torch.testing.assert_close(p_ens[k], p_single[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(record[0]["loss/train"], record[6]["loss/train"])  # it trained
    assert record[6]["loss/train"][0] != record[6]["loss/train"][1]  # and the seeds differ


def test_the_vocabulary_and_positions_come_from_the_task(ensemble):
    trainer, _ = ensemble
    info = trainer.info
    config = trainer.model.template.config
    assert config.vocab_size == info.vocab_size and config.n_positions == info.input_shape[0]
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.0  # no random draws in forward
    assert trainer.model.net.transformer.wte.weight.shape == (2, info.vocab_size, 32)


def test_attention_patterns_are_sites_a_probe_reads(ensemble):
    trainer, record = ensemble
    model = trainer.model
    names = model.site_names()
    assert {PATTERN, "transformer.h.1.attn.pattern", "transformer.h.0.attn", "transformer.h.1.mlp", "lm_head",
            "penultimate", "logits"} <= set(names)
    for metrics in record.values():
        rank = metrics[f"effective_rank/{PATTERN}"]
        assert rank.shape == (2,) and np.all(np.isfinite(rank)) and np.all(rank >= 1)
    x = trainer.data.splits["train"][0][:, :3]
    sites = Sites(read=[PATTERN, "penultimate"])
    with torch.no_grad():
        logits = model(x, sites)
    T = x.shape[-1]
    pattern = sites.acts[PATTERN]
    assert pattern.shape == (2, 3, 4, T, T)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 3, 4, T))
    assert torch.equal(pattern.triu(1), torch.zeros_like(pattern))  # causal
    # lm_head is tied to the token embedding: the readout is the embedding
    assert torch.equal(model.readout(), model.net.transformer.wte.weight)
    torch.testing.assert_close(logits, sites.acts["penultimate"] @ model.readout().transpose(1, 2).unsqueeze(1))
    with pytest.raises(SpecError, match="can be read, not edited"):
        model(x, Sites(edits={PATTERN: lambda v: v}))


def test_a_save_pretrained_directory_loads_through_path(tmp_path):
    info = Experiment.model_validate({**RAW, "seeds": 1}).task.info()
    config = transformers.AutoConfig.for_model("gpt2", n_layer=1, n_embd=16, n_head=2, vocab_size=info.vocab_size,
                                               n_positions=info.input_shape[0], bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    saved = transformers.AutoModelForCausalLM.from_config(config)
    saved.save_pretrained(tmp_path / "gpt2")
    raw = {**RAW, "model": {"name": "hf", "path": str(tmp_path / "gpt2")}, "probes": ["loss"]}
    trainer = Trainer(Experiment.model_validate({**raw, "seeds": [0, 1]}))
    stacked = trainer.model.tensors()
    for name, p in saved.named_parameters():
        for k in range(2):  # every seed starts from the saved weights
            assert torch.equal(stacked[name][k], p.detach()), name
    trainer.run()
    assert trainer.step == 6
    fresh = Trainer(Experiment.model_validate({**raw, "seeds": [0], "model": {**raw["model"], "pretrained": False}}))
    assert not torch.equal(fresh.model.tensors()["transformer.wte.weight"][0], saved.transformer.wte.weight)


@pytest.mark.parametrize("model,expected", [
    ({"name": "hf"}, "model: give config.model_type (e.g. gpt2) or path"),
    ({"name": "hf", "config": {**GPT2, "vocab_size": 10}}, "model: config.vocab_size comes from the task"),
    ({"name": "hf", "config": {"model_type": "no-such-model"}}, "model.config.model_type: "),
    ({"name": "hf", "path": "/nonexistent/model"}, "model.path: no save_pretrained directory at /nonexistent/model"),
    ({"name": "hf", "config": {**GPT2, "n_positions": 4}}, "model.config: 4 positions, the task's sequences have"),
    ({"name": "hf", "config": {**GPT2, "resid_pdrop": 0.1}}, "model.config: a gpt2 model draws random numbers"),
], ids=["no-source", "vocab", "model-type", "path", "positions", "dropout"])
def test_bad_hf_specs_are_one_line(model, expected):
    with pytest.raises(SpecError) as err:
        Trainer(Experiment.model_validate({**RAW, "model": model, "seeds": 1}))
    assert str(err.value).startswith(expected) and "\n" not in str(err.value), str(err.value)


def test_hf_needs_a_sequence_task():
    raw = {**RAW, "task": {"name": "modular-arithmetic", "p": 7}, "probes": [], "seeds": 1}
    with pytest.raises(SpecError, match="'hf' builds a causal language model"):
        Trainer(Experiment.model_validate(raw))


def test_without_transformers_the_error_names_the_extra(monkeypatch):
    import learnscope.models.hf as hf  # imports without transformers: it is loaded only to build

    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails
    with pytest.raises(SpecError, match=r"needs the transformers package, an optional extra: pip install 'learnscope\[hf\]'"):
        Trainer(Experiment.model_validate({**RAW, "seeds": 1}))
    assert hf.HuggingFace.registry_name == "hf"


def test_sites_are_activations_per_example_and_specs_round_trip(ensemble, tmp_path):
    trainer, _ = ensemble
    assert "transformer.wpe" not in trainer.model.site_names()  # [1, T, D]: broadcast over the batch
    with pytest.raises(SpecError, match="no activation per example"):
        trainer.model.check_sites(["transformer.wpe"], "probes[0].site")
    for model in ({"name": "hf", "config": GPT2}, {"name": "hf", "path": str(tmp_path), "pretrained": False}):
        experiment = Experiment.model_validate({**RAW, "model": model})
        assert Experiment.model_validate(experiment.to_dict()) == experiment  # the stored spec reads back
