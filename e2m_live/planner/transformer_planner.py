"""A small Transformer decoder over the whole description, conditioned on the features (issue 19).

The original report's best-scoring planner was a Transformer decoder (accuracy 0.68), dropped because
its output broke the grammar. :class:`TransformerPlanner` samples it through the grammar mask of
:mod:`e2m_live.planner.sequence`, so every plan is valid.

The model (:class:`DescriptionTransformer`) is a pre-norm decoder-only Transformer. Each input
position adds four embeddings: the token, its position, its bar (``BAR`` tokens count them), and a
linear projection of the features (without the key: chords are relative to it, as in the class
LSTMs' stream, so plans transpose exactly). Causal self-attention, ReLU feed-forward (cheaper than
GELU in NumPy, where a step is a few dozen tiny array operations), a final norm and a linear head
over :data:`~e2m_live.planner.sequence.SEQUENCE_VOCAB`.

Sampling runs in NumPy (:class:`TransformerStepper`): one token per step with a key/value cache,
PyTorch's per-call overhead being most of the cost at this size; a test checks it against the
PyTorch forward pass. Positions end at ``max_tokens``, so plans longer than ``plan_bars`` bars are
sampled as sections of ``plan_bars`` bars (:attr:`SequencePlanner.section_bars`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from e2m_live.features import FEATURE_ORDER
from e2m_live.planner.planner import PlanError
from e2m_live.planner.sequence import _MODELS, SEQUENCE_VOCAB, SequencePlanner, Stepper


@dataclass
class TransformerConfig:
    """Hyper-parameters of the description Transformer."""

    vocab_size: int = SEQUENCE_VOCAB.size
    n_features: int = len(FEATURE_ORDER)
    d_model: int = 96
    heads: int = 4
    layers: int = 2
    ffn: int = 192
    max_tokens: int = 256
    plan_bars: int = 12
    dropout: float = 0.1
    ignored_features: list[str] = field(default_factory=lambda: ["key"])


class Block(nn.Module):
    """Pre-norm decoder block: causal self-attention, then a ReLU feed-forward layer."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        d = config.d_model
        self.heads = config.heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.up = nn.Linear(d, config.ffn)
        self.down = nn.Linear(config.ffn, d)
        self.drop = nn.Dropout(config.dropout)
        self.p_drop = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        shape = (batch, steps, self.heads, d // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        attended = nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.p_drop if self.training else 0.0
        )
        x = x + self.drop(self.out(attended.transpose(1, 2).reshape(batch, steps, d)))
        hidden = nn.functional.relu(self.up(self.norm2(x)))
        return x + self.drop(self.down(hidden))


class DescriptionTransformer(nn.Module):
    """Features + previous tokens -> next-token logits over the whole-description sequence."""

    feature_mask: torch.Tensor  # a buffer (register_buffer), 0 for the ignored features

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        if d % config.heads:
            raise ValueError(f"d_model {d} is not a multiple of heads {config.heads}")
        self.embed = nn.Embedding(config.vocab_size, d)
        self.position = nn.Embedding(config.max_tokens, d)
        self.bar = nn.Embedding(config.plan_bars, d)
        self.features = nn.Linear(config.n_features, d)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size)
        self.drop = nn.Dropout(config.dropout)
        mask = torch.ones(config.n_features)
        for name in config.ignored_features:
            mask[FEATURE_ORDER.index(name)] = 0.0
        self.register_buffer("feature_mask", mask, persistent=False)

    def forward(self, features: torch.Tensor, previous: torch.Tensor, bar: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, vocab]`` from the features ``[B, F]``, the input tokens
        ``[B, T]`` and the bar each belongs to ``[B, T]`` (as :class:`StreamLSTM` takes them)."""
        steps = previous.shape[1]
        if steps > self.config.max_tokens:
            raise ValueError(f"{steps} tokens, the model has {self.config.max_tokens} positions")
        positions = torch.arange(steps, device=previous.device)
        x = (
            self.embed(previous)
            + self.position(positions)[None]
            + self.bar(bar.clamp(0, self.config.plan_bars - 1))
            + self.features(features * self.feature_mask)[:, None]
        )
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


# -- NumPy inference -----------------------------------------------------------------------------


def _normalise(x: np.ndarray, mean_vector: np.ndarray) -> np.ndarray:
    """LayerNorm without its affine part (folded into the next matrix); the means as matrix
    products, which cost less than ``ndarray.mean`` on rows this short."""
    centred = x - x @ mean_vector
    return centred / np.sqrt((centred * centred) @ mean_vector + 1e-5)


class TransformerStepper:
    """NumPy copy of a :class:`DescriptionTransformer` that samples one token per step with a
    key/value cache; the state is ``(feature rows [B, d], caches, position)``. Each LayerNorm's
    scale and shift are folded into the matrix after it, the attention scale into the queries."""

    def __init__(self, model: DescriptionTransformer) -> None:
        cfg = model.config
        self.heads = cfg.heads
        self.d = cfg.d_model
        self.max_tokens = cfg.max_tokens
        self.plan_bars = cfg.plan_bars
        self.mean_vector = np.full((self.d, 1), 1.0 / self.d, dtype=np.float32)

        def array(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.float32)

        def folded(norm: nn.LayerNorm, linear: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
            weight = array(linear.weight).T  # [in, out]
            bias = array(norm.bias) @ weight + array(linear.bias)
            return (array(norm.weight)[:, None] * weight).copy(), bias

        self.token_table = array(model.embed.weight)
        self.position_table = array(model.position.weight)
        self.bar_table = array(model.bar.weight)
        self.w_features = array(model.features.weight).T * array(model.feature_mask)[:, None]
        self.b_features = array(model.features.bias)
        self.blocks = []
        scale = 1.0 / math.sqrt(self.d // self.heads)
        for b in cast("Sequence[Block]", model.blocks):  # an nn.ModuleList of Blocks
            qkv, qkv_b = folded(b.norm1, b.qkv)
            qkv[:, : self.d] *= scale
            qkv_b[: self.d] *= scale
            up, up_b = folded(b.norm2, b.up)
            self.blocks.append(
                (
                    qkv,
                    qkv_b,
                    array(b.out.weight).T.copy(),
                    array(b.out.bias),
                    up,
                    up_b,
                    array(b.down.weight).T.copy(),
                    array(b.down.bias),
                )
            )
        self.w_out, self.b_out = folded(model.norm, model.head)

    def start(self, features: np.ndarray) -> tuple[np.ndarray, list, int]:
        batch = features.shape[0]
        constant = features.astype(np.float32) @ self.w_features + self.b_features
        dh = self.d // self.heads
        caches = [
            (
                np.zeros((batch, self.heads, dh, self.max_tokens), np.float32),  # keys, transposed
                np.zeros((batch, self.heads, self.max_tokens, dh), np.float32),
            )
            for _ in self.blocks
        ]
        return constant, caches, 0

    def step(
        self, state: tuple[np.ndarray, list, int], tokens: np.ndarray, bars: np.ndarray
    ) -> tuple[np.ndarray, tuple[np.ndarray, list, int]]:
        constant, caches, t = state
        if t >= self.max_tokens:
            raise ValueError(f"the model has {self.max_tokens} positions")
        batch = len(tokens)
        heads, d, dh = self.heads, self.d, self.d // self.heads
        x = (
            self.token_table[tokens]
            + self.position_table[t]
            + self.bar_table[np.minimum(bars, self.plan_bars - 1)]
            + constant
        )
        for (qkv_w, qkv_b, out_w, out_b, up_w, up_b, down_w, down_b), (keys, values) in zip(
            self.blocks, caches, strict=True
        ):
            qkv = _normalise(x, self.mean_vector) @ qkv_w + qkv_b
            keys[:, :, :, t] = qkv[:, d : 2 * d].reshape(batch, heads, dh)
            values[:, :, t] = qkv[:, 2 * d :].reshape(batch, heads, dh)
            scores = qkv[:, :d].reshape(batch, heads, 1, dh) @ keys[:, :, :, : t + 1]  # [B, H, 1, t+1]
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attended = (scores @ values[:, :, : t + 1]) / scores.sum(-1, keepdims=True)
            x = x + attended.reshape(batch, d) @ out_w + out_b
            x = x + np.maximum(_normalise(x, self.mean_vector) @ up_w + up_b, 0.0) @ down_w + down_b
        logits = _normalise(x, self.mean_vector) @ self.w_out + self.b_out
        return logits, (constant, caches, t + 1)

    def select(self, state: tuple[np.ndarray, list, int], rows: np.ndarray) -> tuple[np.ndarray, list, int]:
        constant, caches, t = state
        return constant[rows], [(k[rows], v[rows]) for k, v in caches], t


# -- persistence and the planner ------------------------------------------------------------------


def save_transformer(model: DescriptionTransformer, path: Path) -> None:
    """Weights as safetensors, the config as JSON in its metadata (nothing is pickled)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(
        tensors,
        str(path),
        metadata={"config": json.dumps(asdict(model.config)), "kind": "description-transformer"},
    )


def load_transformer(path: Path) -> DescriptionTransformer:
    """Load a model written by :func:`save_transformer`."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("kind") != "description-transformer" or "config" not in metadata:
        raise ValueError("not a description Transformer (no config in the safetensors metadata)")
    config: dict[str, Any] = json.loads(metadata["config"])
    model = DescriptionTransformer(TransformerConfig(**config))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


class TransformerPlanner(SequencePlanner):
    """Plans with a :class:`DescriptionTransformer` through the grammar mask."""

    kind = "transformer"
    default_dir = Path(os.environ.get("E2M_TRANSFORMER_PLANNER_DIR", _MODELS / "planner-transformer"))

    @staticmethod
    def make_stepper(model: DescriptionTransformer) -> Stepper:
        if model.config.vocab_size != SEQUENCE_VOCAB.size:
            raise PlanError(
                f"model vocabulary {model.config.vocab_size}, the sequence has {SEQUENCE_VOCAB.size}"
            )
        return TransformerStepper(model)

    @staticmethod
    def save_weights(model: DescriptionTransformer, path: Path) -> None:
        save_transformer(model, path)

    @staticmethod
    def load_weights(path: Path) -> DescriptionTransformer:
        return load_transformer(path)
