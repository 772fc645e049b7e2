"""Hyper-parameters of the FIGARO seq2seq model, saved as ``config.json`` with every checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from e2m_live.description.vocab import DESCRIPTION_VOCAB_SIZE, REMI_VOCAB_SIZE


@dataclass
class FigaroConfig:
    """Sizes of a FIGARO model (defaults: the official ``figaro-expert``).

    ``max_bars`` and ``max_positions`` are the largest bar and position ids; the embedding
    tables have one more row each (FIGARO sets ``max_bars = context_size``).
    ``max_relative_positions`` is BERT's ``max_position_embeddings``: the distance table has
    ``2 * max_relative_positions - 1`` rows. ``relative_cross_attention`` selects the layout
    of FIGARO's released checkpoints, whose cross-attention also has relative position terms.
    ``description_options`` mirrors FIGARO's ablations (e.g. ``{"instruments": False}``):
    token classes switched off there are dropped from descriptions before encoding.
    """

    d_model: int = 512
    encoder_layers: int = 4
    decoder_layers: int = 6
    heads: int = 8
    ffn: int = 2048
    remi_vocab_size: int = REMI_VOCAB_SIZE
    description_vocab_size: int = DESCRIPTION_VOCAB_SIZE
    context_size: int = 256
    max_bars: int = 256
    max_positions: int = 512
    max_relative_positions: int = 1024
    relative_cross_attention: bool = False
    layer_norm_eps: float = 1e-12
    description_options: dict[str, bool] | None = field(default=None)

    def __post_init__(self) -> None:
        for name in (
            "d_model",
            "encoder_layers",
            "decoder_layers",
            "heads",
            "ffn",
            "context_size",
            "remi_vocab_size",
            "description_vocab_size",
            "max_bars",
            "max_positions",
            "max_relative_positions",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"FigaroConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of heads {self.heads}")
        if self.context_size > self.max_relative_positions:
            raise ValueError("context_size must not exceed max_relative_positions")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @classmethod
    def expert(cls, *, relative_cross_attention: bool = True) -> FigaroConfig:
        """The official ``figaro-expert`` size (released checkpoints use relative cross-attention)."""
        return cls(relative_cross_attention=relative_cross_attention)

    @classmethod
    def compact(cls) -> FigaroConfig:
        """Our default live size: fast enough for real time on two CPU cores (see docs/figaro.md)."""
        return cls(d_model=256, encoder_layers=3, decoder_layers=4, heads=4, ffn=1024)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FigaroConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown FigaroConfig fields: {', '.join(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FigaroConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read FIGARO config {path}: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"FIGARO config {path} is not a JSON object")
        return cls.from_dict(data)
