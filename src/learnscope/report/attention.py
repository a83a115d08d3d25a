"""The attention patterns of a transformer's heads at the end of a run,
from its final checkpoint: per layer and head, the mean pattern over the
first examples of the split its attention probes read, averaged over seeds.
Drawn for the arms that probe attention (induction, previous-token and sink
scores): what the scores summarize, seen whole."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from learnscope.models.base import Sites
from learnscope.probes.circuits import attention_layers
from learnscope.report.plots import new_figure
from learnscope.results import ArmData
from learnscope.runner import build_trainer
from learnscope.store.base import RunStore
from learnscope.store.checkpoints import read_checkpoint

ATTENTION_PROBES = ("induction_score", "previous_token_score", "attention_sink")
EXAMPLES = 256


def attention_split(data: ArmData) -> str | None:
    """The split the arm's first attention probe reads; None when it probes no attention."""
    if not data.has_experiment:
        return None
    for probe in data.experiment.probes:
        if probe.registry_name in ATTENTION_PROBES:
            return str(probe.split)  # type: ignore[attr-defined]
    return None


@torch.no_grad()
def mean_patterns(store: RunStore, data: ArmData, split: str) -> tuple[int, np.ndarray] | None:
    """(step, [layers, heads, T, T]): the final checkpoint's attention patterns on the
    first EXAMPLES examples of `split`, averaged over examples and the seeds kept."""
    checkpoint = read_checkpoint(store, data.record.id)
    if checkpoint is None:
        return None
    trainer = build_trainer(data.experiment)
    trainer.load_state(checkpoint.tensors, checkpoint.meta)
    model = trainer.model
    layers = attention_layers(model, "report", "the attention figure")
    sites = Sites(read=[f"attn.{i}" for i in range(layers)])
    model.eval()
    model(trainer.data.splits[split][0][:, :EXAMPLES], sites)
    kept = [k for k, seed in enumerate(data.record.seeds) if seed in data.seeds]
    patterns = torch.stack([sites.acts[f"attn.{i}"][kept].double().mean((0, 1)) for i in range(layers)])
    return checkpoint.step, patterns.numpy()


def attention_figure(name: str, split: str, step: int, patterns: np.ndarray) -> tuple[str, Figure]:
    layers, heads = patterns.shape[:2]
    fig, axes = new_figure(1.0 + 2.6 * heads, 0.6 + 2.4 * layers, rows=layers, cols=heads)
    axes = np.asarray(axes).reshape(layers, heads)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer, head]
            image = ax.imshow(patterns[layer, head], cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"L{layer}H{head}", fontsize=9)
            ax.set_xlabel("key position", fontsize=8)
            ax.set_ylabel("query position", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="attention")
    caption = (f"{name}: each head's attention pattern at step {step} (final checkpoint), the mean over the "
               f"first {EXAMPLES} examples of {split} and over seeds")
    fig.suptitle(f"{name}: attention patterns, layer × head", fontsize=10)
    return caption, fig


def attention_figures(store: RunStore, arms: dict[str, ArmData]) -> list[tuple[str, Figure]]:
    """One layer × head grid of mean attention patterns per arm that probes attention."""
    figures = []
    for name, data in arms.items():
        split = attention_split(data)
        found = mean_patterns(store, data, split) if split is not None else None
        if found is not None and split is not None:
            figures.append(attention_figure(name, split, *found))
    return figures
