"""Hugging Face causal language models as seed ensembles, built from a
config: nothing is downloaded.

    model: {name: hf, config: {model_type: gpt2, n_layer: 2, n_embd: 64, n_head: 4}}
    model: {name: hf, path: runs/base-model}            # a save_pretrained directory

`config` is a transformers config (`AutoConfig.for_model(model_type, ...)`);
the vocabulary size and the positions (`max_position_embeddings`, at least
the task's sequence length) come from the task. Dropout probabilities the
config does not set are 0: dropout draws would tie a seed to its ensemble
mates (learnscope refuses random draws in forward); token ids outside the
task's vocabulary (GPT-2's 50256) are dropped. With `path`, the directory's
config and weights are loaded from disk alone (every seed then starts from
the saved weights; `pretrained: false` initializes each seed afresh from the
saved config); `config` keys, if given, override the saved config.

Each seed's member is `AutoModelForCausalLM.from_config` under that seed's
generator, with eager attention (the pattern is computed, and so can be
read); the ensemble is the torch-module one (models.torch_module): stacked
parameters, vmap over functional_call. Sites are module names
(`transformer.h.0`, `transformer.h.0.attn`, `transformer.h.0.mlp`,
`lm_head`, ...: a module's output, the first tensor of a tuple), the
attention patterns `<attention module>.pattern` [S, B, heads, T, T] (read
only; GPT-2's `transformer.h.{i}.attn.pattern`, Llama's
`model.layers.{i}.self_attn.pattern`), `penultimate` (the final hidden state `lm_head` reads) and
`logits`. A sequence task is needed (the model predicts the next token at
every position: `facts`).

transformers is an optional extra: `pip install 'learnscope[hf]'`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from torch import nn

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.models.base import EnsembleModel, Model
from learnscope.models.torch_module import ensemble_of
from learnscope.tasks.base import TaskInfo

TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id")


@registry.models.register("hf")
class HuggingFace(Model):
    config: dict[str, Any] = Field(default_factory=dict, description="a transformers config: model_type and its keys")
    path: str | None = Field(None, min_length=1, description="a save_pretrained directory on disk")
    pretrained: bool | None = Field(None, description="with path: start every seed from the saved weights (the "
                                    "default), or initialize each seed from the saved config (false)")

    @model_validator(mode="after")
    def _one_source(self):
        if self.path is None and "model_type" not in self.config:
            raise ValueError("give config.model_type (e.g. gpt2) or path (a save_pretrained directory)")
        if self.path is not None and "model_type" in self.config:
            raise ValueError("give config.model_type or path, not both")
        if self.path is None and self.pretrained is not None:
            raise ValueError("pretrained applies to a model loaded from path")
        for key in ("vocab_size",):
            if key in self.config:
                raise ValueError(f"config.{key} comes from the task; leave it out")
        return self

    @property
    def loads_weights(self) -> bool:
        return self.path is not None and self.pretrained is not False

    def build(self, info: TaskInfo, seeds: Sequence[int]) -> EnsembleModel:
        if not info.sequence or info.vocab_size is None:
            raise SpecError("model.name", "'hf' builds a causal language model, which predicts the next token at "
                            "every position: it needs a sequence task (e.g. facts)")
        transformers = _transformers()
        config, source = self._config(transformers, info)
        auto = transformers.AutoModelForCausalLM
        path = "model.path" if self.path is not None else "model.config"
        loaded = self.loads_weights

        def member() -> nn.Module:
            try:
                if loaded:
                    return auto.from_pretrained(self.path, config=config, local_files_only=True,
                                                attn_implementation="eager")
                return auto.from_config(config, attn_implementation="eager")
            except Exception as exc:
                raise SpecError(path, f"transformers cannot build {source}: {exc.__class__.__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from None

        return ensemble_of(member, info, seeds, path, source, call_kwargs={"use_cache": False})

    def _config(self, transformers: Any, info: TaskInfo) -> tuple[Any, str]:
        overrides = dict(self.config)
        if self.path is not None:
            directory = Path(self.path)
            if not (directory / "config.json").is_file():
                raise SpecError("model.path", f"no save_pretrained directory at {self.path} (no config.json)")
            try:
                config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
            except Exception as exc:
                raise SpecError("model.path", f"cannot read the config in {self.path}: {exc.__class__.__name__}: "
                                f"{exc}") from None
            for key, value in overrides.items():
                setattr(config, key, value)
            source = f"the model in {self.path}"
        else:
            model_type = overrides.pop("model_type")
            try:
                config = transformers.AutoConfig.for_model(model_type, **overrides)
            except Exception as exc:
                raise SpecError("model.config.model_type", f"{exc.__class__.__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
            source = f"a {model_type} model"
        given = set(overrides) | {config.attribute_map.get(k, k) for k in overrides}
        length, vocab = info.input_shape[0], info.vocab_size
        assert vocab is not None  # a sequence task, checked in build
        if self.loads_weights:
            if config.vocab_size != vocab:
                raise SpecError("model.path", f"the saved model's vocabulary is {config.vocab_size} tokens, the "
                                f"task's {vocab}")
        else:
            config.vocab_size = vocab
        positions = getattr(config, "max_position_embeddings", None)
        if positions is not None:
            if not (given & {"max_position_embeddings", config.attribute_map.get("max_position_embeddings")}) \
                    and not self.loads_weights:
                config.max_position_embeddings = positions = length
            if positions < length:
                raise SpecError("model.config" if self.path is None else "model.path",
                                f"{positions} positions, the task's sequences have {length} tokens")
        for key, value in config.to_dict().items():
            if ("dropout" in key or "pdrop" in key) and isinstance(value, float) and key not in given:
                setattr(config, key, 0.0)
        for key in TOKEN_IDS:
            value = getattr(config, key, None)
            if isinstance(value, int) and value >= vocab and key not in given:
                setattr(config, key, None)
        return config, source


def _transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise SpecError("model.name", "'hf' needs the transformers package, an optional extra: "
                        "pip install 'learnscope[hf]'") from None
