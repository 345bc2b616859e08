"""How much accelerator memory a stage needs, estimated from its spec before it runs: what a worker
reserves for it when several stages share one GPU (:mod:`xstilts.runtime.gpu_budget`).

The model's size comes from its ``config.json``: the encoder is built on PyTorch's meta device, so
no weight is loaded and nothing is allocated. The rest is arithmetic:

- Training: 16 bytes per parameter (fp32 weights 4, gradients 4, AdamW's two moments 8; frozen word
  embeddings keep only their weights), 2 bytes per non-embedding parameter for the bf16 copies
  autocast keeps during a step, and the activations the backward pass needs: rows x
  ``max_seq_length`` x hidden x layers x 64 bytes. Counted for one XLM-R layer under bf16 autocast
  with fused attention (matmul inputs in bf16, layer-norm inputs and the residual stream in fp32,
  GELU's input and output, 1-byte dropout masks) it is about 42 bytes per token and hidden unit;
  eager attention at 128 tokens adds about 10 (its L x L scores); the rest is the allocator's
  rounding. Gradient accumulation does not add: one micro-batch of ``batch_size`` rows is alive at
  a time.
- Prediction: fp32 weights and their bf16 copies (6 bytes per parameter), and one layer's working
  set at a time, tokens x hidden x 32 bytes, tokens being at most the predict batches' cap;
  retrieval also keeps every layer's fp32 hidden states of a batch.

The heads (a few thousand parameters) and the CUDA context (see ``gpu_budget``) are not counted.
An estimate that turns out low is not fatal: a stage that runs out of memory beside others is
queued again to run alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from xstilts.experiments.plan import (
    EvaluateStageSpec,
    IntermediateStageSpec,
    PredictStageSpec,
    StageSpec,
    TargetStageSpec,
)
from xstilts.modeling.sources import loadable
from xstilts.training.predict import GPU_MAX_TOKENS

GIB = 1024**3
# Per parameter, in bytes: fp32 weights, their gradients, AdamW's exp_avg and exp_avg_sq.
WEIGHT_BYTES, GRADIENT_BYTES, ADAMW_BYTES = 4, 4, 8
# bf16 copies of the weights autocast casts for the matmuls (non-embedding parameters).
AUTOCAST_COPY_BYTES = 2
# Activations per token, hidden unit and layer that training keeps for the backward pass.
TRAIN_ACTIVATION_BYTES = 64
# Working set per token and hidden unit of one layer in inference.
PREDICT_ACTIVATION_BYTES = 32
RETRIEVAL_STATE_BYTES = 4  # fp32 hidden states of every layer (output_hidden_states)


@dataclass(frozen=True)
class ModelSize:
    """What the estimate needs to know about an encoder."""

    parameters: int
    embedding_parameters: int  # under "embeddings": word, position, type embeddings, their norm
    word_embedding_parameters: int
    hidden: int
    layers: int

    @property
    def dense_parameters(self) -> int:
        return self.parameters - self.embedding_parameters


@dataclass(frozen=True)
class StageMemory:
    """Bytes a stage needs on its device, by what holds them."""

    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def gib(self) -> float:
        return self.total / GIB


@lru_cache(maxsize=32)
def model_size(name_or_path: str, revision: str | None = None) -> ModelSize:
    """The encoder's parameter counts and shape from its config alone (built on the meta device)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(
        loadable(name_or_path), revision=revision, trust_remote_code=False
    )
    with torch.device("meta"):
        encoder = AutoModel.from_config(config, trust_remote_code=False)
    parameters = embeddings = 0
    for name, p in encoder.named_parameters():
        parameters += p.numel()
        if "embeddings" in name:
            embeddings += p.numel()
    return ModelSize(
        parameters=parameters,
        embedding_parameters=embeddings,
        word_embedding_parameters=encoder.get_input_embeddings().weight.numel(),
        hidden=int(config.hidden_size),
        layers=int(config.num_hidden_layers),
    )


def training_memory(
    size: ModelSize, batch_size: int, max_seq_length: int, freeze_word_embeddings: bool = False
) -> StageMemory:
    trained = size.parameters - (size.word_embedding_parameters if freeze_word_embeddings else 0)
    tokens = batch_size * max_seq_length
    return StageMemory(
        weights=WEIGHT_BYTES * size.parameters + AUTOCAST_COPY_BYTES * size.dense_parameters,
        gradients=GRADIENT_BYTES * trained,
        optimizer=ADAMW_BYTES * trained,
        activations=TRAIN_ACTIVATION_BYTES * tokens * size.hidden * size.layers,
    )


def prediction_memory(
    size: ModelSize, batch_size: int, max_seq_length: int, retrieval: bool = False
) -> StageMemory:
    if retrieval:  # sentence batches are not capped by tokens, and every layer's states are kept
        tokens = batch_size * max_seq_length
        per_token = PREDICT_ACTIVATION_BYTES + RETRIEVAL_STATE_BYTES * (size.layers + 1)
    else:
        tokens = min(batch_size * max_seq_length, GPU_MAX_TOKENS)
        per_token = PREDICT_ACTIVATION_BYTES
    return StageMemory(
        weights=WEIGHT_BYTES * size.parameters + AUTOCAST_COPY_BYTES * size.dense_parameters,
        gradients=0,
        optimizer=0,
        activations=per_token * tokens * size.hidden,
    )


def stage_memory(spec: StageSpec) -> StageMemory | None:
    """The estimate for a stored stage's spec; None for a stage that needs no accelerator."""
    if isinstance(spec, EvaluateStageSpec):
        return None
    size = model_size(spec.model.name_or_path, spec.model.revision)
    if isinstance(spec, IntermediateStageSpec | TargetStageSpec):
        cfg = spec.training
        return training_memory(size, cfg.batch_size, cfg.max_seq_length, cfg.freeze_word_embeddings)
    assert isinstance(spec, PredictStageSpec)
    ev = spec.evaluation
    return prediction_memory(size, ev.batch_size, ev.max_seq_length, retrieval=spec.head is None)
