"""The five class LSTMs: four ordered-bin models and one instruments + chords stream model.

Every model sees the normalised :meth:`EmotionFeatures.to_vector` at every step, the bar's position
in the plan (``bar / plan_bars``) and its own previous output:

* :class:`OrderedClassLSTM` runs once per bar and predicts one bin (0..32) of one meta class
  (note density, mean velocity, mean pitch or mean duration) from the previous bar's bin and,
  optionally (``instrument_embedding > 0``), the bar's instrument set: a bar of bass and drums has
  a low mean pitch (FIGARO's mean pitch counts drum key numbers), a bar that adds a lead is busier.
  The planner samples the instruments first, so the meta tokens fit the instrumentation.
  ``context`` names earlier meta classes of the *same* bar that the model also sees (FIGARO's
  order: density, velocity, pitch, duration), so the four bins of a bar fit together.
* :class:`StreamLSTM` runs once per stream token (see :mod:`e2m_live.planner.classes`) and predicts
  the next instrument, chord or end marker. It ignores the key feature: its chords are relative
  to the key, so the model is transposition-invariant by construction.

Weights are stored as safetensors, hyper-parameters as plain JSON (:func:`save_model`,
:func:`load_model`); nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from e2m_live.features import FEATURE_ORDER


@dataclass
class OrderedLSTMConfig:
    """Hyper-parameters of one ordered-class LSTM."""

    name: str
    n_classes: int = 33
    n_features: int = len(FEATURE_ORDER)
    embedding: int = 16
    hidden: int = 96
    layers: int = 1
    dropout: float = 0.0
    plan_bars: int = 12
    #: Size of the projection of the bar's instrument multi-hot (0: not conditioned on instruments).
    instrument_embedding: int = 0
    n_instruments: int = 129
    #: Ordered classes of the same bar (sampled before this one) embedded as extra inputs.
    context: list[str] = field(default_factory=list)
    context_embedding: int = 8


@dataclass
class StreamLSTMConfig:
    """Hyper-parameters of the instruments + chords LSTM."""

    vocab_size: int
    n_features: int = len(FEATURE_ORDER)
    embedding: int = 48
    hidden: int = 192
    layers: int = 1
    dropout: float = 0.0
    plan_bars: int = 12
    ignored_features: list[str] = field(default_factory=lambda: ["key"])


def _feature_mask(n_features: int, ignored: list[str]) -> torch.Tensor:
    mask = torch.ones(n_features)
    for name in ignored:
        mask[FEATURE_ORDER.index(name)] = 0.0
    return mask


class OrderedClassLSTM(nn.Module):
    """Predicts one ordered bin per bar. Input id ``n_classes`` is the start symbol (no previous bar)."""

    def __init__(self, config: OrderedLSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.n_classes + 1, config.embedding)
        self.instruments = (
            nn.Linear(config.n_instruments, config.instrument_embedding, bias=False)
            if config.instrument_embedding
            else None
        )
        # One embedding per context class; id n_classes stands for "unknown" (padding).
        self.context = nn.ModuleList(
            nn.Embedding(config.n_classes + 1, config.context_embedding) for _ in config.context
        )
        self.lstm = nn.LSTM(
            config.n_features
            + config.embedding
            + 1
            + config.instrument_embedding
            + len(config.context) * config.context_embedding,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.n_classes)

    @property
    def start_id(self) -> int:
        return self.config.n_classes

    def forward(
        self,
        features: torch.Tensor,
        previous: torch.Tensor,
        instruments: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, n_classes]``. ``previous[:, t]`` is the bin of bar
        ``t - 1`` (the start id for ``t == 0``); ``features`` is ``[B, n_features]``;
        ``instruments`` ``[B, T, n_instruments]`` is each bar's instrument multi-hot (required iff the
        model is conditioned on instruments); ``context`` ``[B, T, len(config.context)]`` holds the
        bar's bins of the context classes (required iff there are any)."""
        steps = previous.shape[1]
        bar = torch.arange(steps, device=previous.device).expand_as(previous)
        parts = [
            features.unsqueeze(1).expand(-1, steps, -1),
            self.embed(previous),
            (bar.float() / self.config.plan_bars).unsqueeze(-1),
        ]
        if self.instruments is not None:
            if instruments is None:
                raise ValueError("this model is conditioned on the bar's instruments: pass them")
            parts.append(self.instruments(instruments.float()))
        if self.config.context:
            if context is None:
                raise ValueError(f"this model sees the bar's {', '.join(self.config.context)}: pass them")
            parts.extend(embed(context[..., i]) for i, embed in enumerate(self.context))
        out, _ = self.lstm(torch.cat(parts, dim=-1))
        return self.head(self.drop(out))


class StreamLSTM(nn.Module):
    """Predicts the next token of the instruments + chords stream."""

    feature_mask: torch.Tensor  # a buffer (register_buffer), 0 for the ignored features

    def __init__(self, config: StreamLSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embedding, padding_idx=0)
        self.lstm = nn.LSTM(
            config.n_features + config.embedding + 1,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size)
        self.register_buffer(
            "feature_mask", _feature_mask(config.n_features, config.ignored_features), persistent=False
        )

    def _inputs(self, features: torch.Tensor, previous: torch.Tensor, bar: torch.Tensor) -> torch.Tensor:
        feats = (features * self.feature_mask).unsqueeze(1).expand(-1, previous.shape[1], -1)
        position = (bar.float() / self.config.plan_bars).unsqueeze(-1)
        return torch.cat([feats, self.embed(previous), position], dim=-1)

    def forward(self, features: torch.Tensor, previous: torch.Tensor, bar: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, vocab]`` from the previous tokens ``[B, T]`` and the bar
        index ``[B, T]`` each prediction belongs to."""
        out, _ = self.lstm(self._inputs(features, previous, bar))
        return self.head(self.drop(out))


# -- persistence -------------------------------------------------------------------------------


def save_model(model: OrderedClassLSTM | StreamLSTM, path: Path) -> None:
    """Write ``model``'s weights to ``path`` (safetensors)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": json.dumps(asdict(model.config))})


def load_model(path: Path) -> OrderedClassLSTM | StreamLSTM:
    """Load a model written by :func:`save_model` (its config travels in the file's metadata)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "config" not in metadata:
        raise ValueError(f"{path}: no planner config in the safetensors metadata")
    config: dict[str, Any] = json.loads(metadata["config"])
    model: OrderedClassLSTM | StreamLSTM
    if "vocab_size" in config:
        model = StreamLSTM(StreamLSTMConfig(**config))
    else:
        model = OrderedClassLSTM(OrderedLSTMConfig(**config))
    model.load_state_dict(load_file(str(path)))
    model.eval()
    return model
