"""Model internals that must not change results: the final transformer
block computes only the last position unless one of its sites is captured,
and both paths give the same outputs."""

from __future__ import annotations

import pytest
import torch

from learnscope.models.base import Sites
from learnscope.spec import Experiment
from learnscope.train.trainer import Trainer


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("layernorm", [True, False])
def test_final_block_shortcut_matches_full_computation(layers, layernorm):
    spec = {"task": {"name": "modular-arithmetic", "p": 11}, "seeds": [0, 1],
            "model": {"name": "transformer", "layers": layers, "d_model": 16, "heads": 2, "d_mlp": 24,
                      "layernorm": layernorm}}
    trainer = Trainer(Experiment.model_validate(spec))
    x, _ = trainer.data.splits["train"]
    final = layers - 1
    shortcut = trainer.model(x)
    capture = Sites(read=[f"mlp.{final}", f"attn.{final}"])
    full = trainer.model(x, capture)
    torch.testing.assert_close(shortcut, full, rtol=1e-5, atol=1e-6)
    # the full path really ran: every position's pattern and MLP activations are there
    assert capture.acts[f"attn.{final}"].shape[-2:] == (3, 3)
    assert capture.acts[f"mlp.{final}"].shape[2] == 3
    # and outputs are not trivially equal (the model is not constant)
    assert shortcut[:, 0].sub(shortcut[:, 1]).abs().max() > 1e-4


def test_attention_pattern_is_causal_and_normalized():
    spec = {"task": {"name": "modular-arithmetic", "p": 11}, "seeds": [3],
            "model": {"name": "transformer", "d_model": 16, "heads": 4, "d_mlp": 16}}
    trainer = Trainer(Experiment.model_validate(spec))
    x, _ = trainer.data.splits["test"]
    capture = Sites(read=["attn.0"])
    trainer.model(x, capture)
    pattern = capture.acts["attn.0"]  # [S, B, H, T, T]
    assert pattern.shape == (1, x.shape[1], 4, 3, 3)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
    assert torch.all(pattern.triu(1) == 0)
