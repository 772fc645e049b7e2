"""FIGARO's seq2seq transformer in plain PyTorch.

Architecture-identical to FIGARO's ``Seq2SeqModule`` (a ``transformers`` ``EncoderDecoderModel``
built from two ``BertConfig(position_embedding_type="relative_key_query")``): post-LN BERT
layers, GELU (erf), LayerNorm eps 1e-12, relative key-query position terms from a distance
table shared by all heads of a layer, no attention masks other than the decoder's causal one
(FIGARO passes none), and the zero-padding FIGARO applies so encoder states and decoder
inputs have the same length. ``tests/test_figaro_equivalence.py`` checks this against
``transformers`` to 1e-4.

Two ways to run the decoder: ``forward``/``decode`` for whole sequences (training, reference),
and ``decode_cached`` which extends a :class:`DecoderCache` by one or more tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from e2m_live.figaro.config import FigaroConfig


def _relative_scores(q: Tensor, k: Tensor, table: Tensor, max_rel: int, q_offset: int = 0) -> Tensor:
    """BERT's relative_key_query terms ``q·e(l-r) + k·e(l-r)`` for queries at ``q_offset + l``.

    Instead of gathering an ``(L, R, head_dim)`` block of table rows (BERT's way), multiply
    queries and keys by the ``L + R - 1`` rows in use and pick each pair's distance with a
    gather: the same sums, far less memory traffic.
    """
    q_len, k_len = q.shape[-2], k.shape[-2]
    first = q_offset - (k_len - 1) + max_rel - 1  # table row of the smallest distance
    rows = table[first : first + q_len + k_len - 1].to(q.dtype)  # (W, head_dim)
    left = torch.arange(q_len, device=q.device).view(-1, 1)
    right = torch.arange(k_len, device=q.device).view(1, -1)
    index = left - right + (k_len - 1)  # (L, R): column of distance l - r
    by_query = (q @ rows.T).gather(-1, index.expand(*q.shape[:-2], q_len, k_len))
    by_key = (k @ rows.T).gather(-1, index.T.expand(*k.shape[:-2], k_len, q_len)).transpose(-1, -2)
    return by_query + by_key


def _split_heads(x: Tensor, heads: int) -> Tensor:
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


class Attention(nn.Module):
    """Post-LN multi-head attention block (BERT's ``BertAttention``) with fused projections.

    Self-attention uses one ``(d, 3d)`` projection for query, key and value; cross-attention
    a ``(d, d)`` query and a ``(d, 2d)`` key/value projection applied once to encoder states.
    """

    def __init__(self, config: FigaroConfig, *, cross: bool, relative: bool) -> None:
        super().__init__()
        d = config.d_model
        self.heads = config.heads
        self.head_dim = config.head_dim
        self.cross = cross
        self.max_rel = config.max_relative_positions
        if cross:
            self.query = nn.Linear(d, d)
            self.key_value = nn.Linear(d, 2 * d)
        else:
            self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        n_distances = 2 * config.max_relative_positions - 1
        self.distance = nn.Embedding(n_distances, config.head_dim) if relative else None

    def project_memory(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of encoder states, split into heads: ``(B, h, S, head_dim)`` each."""
        k, v = self.key_value(memory).chunk(2, dim=-1)
        return _split_heads(k, self.heads), _split_heads(v, self.heads)

    def scores_and_mix(self, q: Tensor, k: Tensor, v: Tensor, *, q_offset: int, causal: bool) -> Tensor:
        scores = q @ k.transpose(-1, -2)
        if self.distance is not None:
            scores = scores + _relative_scores(q, k, self.distance.weight, self.max_rel, q_offset)
        scores = scores / math.sqrt(self.head_dim)
        if causal:
            q_len, k_len = q.shape[-2], k.shape[-2]
            future = torch.ones(q_len, k_len, dtype=torch.bool, device=q.device).triu(k_len - q_len + 1)
            scores = scores.masked_fill(future, float("-inf"))
        return scores.softmax(dim=-1) @ v

    def forward(self, x: Tensor, memory: Tensor | None = None, *, causal: bool = False) -> Tensor:
        if self.cross:
            assert memory is not None
            q = _split_heads(self.query(x), self.heads)
            k, v = self.project_memory(memory)
        else:
            q, k, v = (_split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        mixed = self.scores_and_mix(q, k, v, q_offset=0, causal=causal)
        return self.norm(self.out(_merge_heads(mixed)) + x)


class FeedForward(nn.Module):
    """BERT's intermediate + output block: ``LN(x + W2 gelu(W1 x))``."""

    def __init__(self, config: FigaroConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.ffn)
        self.down = nn.Linear(config.ffn, config.d_model)
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.down(F.gelu(self.up(x))) + x)


class EncoderLayer(nn.Module):
    def __init__(self, config: FigaroConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config, cross=False, relative=True)
        self.ffn = FeedForward(config)

    def forward(self, x: Tensor) -> Tensor:
        return self.ffn(self.self_attn(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: FigaroConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config, cross=False, relative=True)
        self.cross_attn = Attention(config, cross=True, relative=config.relative_cross_attention)
        self.ffn = FeedForward(config)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        return self.ffn(self.cross_attn(self.self_attn(x, causal=True), memory))


class EmbeddingInput(nn.Module):
    """What BERT's embedding module does to ``inputs_embeds`` without absolute positions:
    add token-type 0 and apply LayerNorm."""

    def __init__(self, config: FigaroConfig) -> None:
        super().__init__()
        self.token_type = nn.Parameter(torch.zeros(config.d_model))
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.token_type)


_Projection = Callable[[Tensor], Tensor]
_Norm = tuple[Tensor, Tensor]  # a LayerNorm's weight and bias
#: One decoder layer for a one-token step: self-attention (qkv, out, norm), cross-attention
#: (query, out, norm), feed-forward (up, down, norm).
_LayerOps = tuple[
    _Projection, _Projection, _Norm, _Projection, _Projection, _Norm, _Projection, _Projection, _Norm
]


@dataclass
class DecoderCache:
    """Keys/values of every decoder layer for one decoder window, preallocated to ``capacity``.

    ``self_kv``: per layer ``(B, 2, h, capacity, head_dim)`` (keys, values); ``length`` tokens
    are filled. ``cross_k``/``cross_v``: per layer encoder keys/values of the current description
    window (computed once per window by :meth:`FigaroModel.start_cache`). ``self_tables`` and
    ``cross_tables``: per layer the distance table reversed (plain and pre-scaled by
    ``1/sqrt(head_dim)``), so the table rows a step needs are one contiguous slice; ``None``
    where the attention has no relative terms.
    """

    self_kv: list[Tensor]
    cross_k: list[Tensor]
    cross_v: list[Tensor]
    self_tables: list[tuple[Tensor, Tensor] | None]
    cross_tables: list[tuple[Tensor, Tensor] | None]
    length: int = 0
    step_ops: tuple[list[_LayerOps], _Projection] | None = None  # filled by the first one-token step

    @property
    def capacity(self) -> int:
        return self.self_kv[0].shape[3]


def _reversed_tables(attn: Attention) -> tuple[Tensor, Tensor] | None:
    if attn.distance is None:
        return None
    table = attn.distance.weight.detach().flip(0).contiguous()
    return table, (table / math.sqrt(attn.head_dim)).contiguous()


class FigaroModel(nn.Module):
    """FIGARO's description-to-REMI+ seq2seq transformer (description flavour)."""

    def __init__(self, config: FigaroConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.desc_embedding = nn.Embedding(config.description_vocab_size, d)
        self.remi_embedding = nn.Embedding(config.remi_vocab_size, d)
        self.bar_embedding = nn.Embedding(config.max_bars + 1, d)
        self.position_embedding = nn.Embedding(config.max_positions + 1, d)
        self.encoder_input = EmbeddingInput(config)
        self.encoder_layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))
        self.decoder_input = EmbeddingInput(config)
        self.decoder_layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
        self.output = nn.Linear(d, config.remi_vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """BERT's initialisation: normal(0, 0.02) weights, zero biases, unit LayerNorm."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    # --- whole sequences -----------------------------------------------------------------

    def encode(self, desc_ids: Tensor, desc_bar_ids: Tensor | None = None) -> Tensor:
        """Encoder states ``(B, S, d)`` of description ids ``(B, S)``."""
        x = self.desc_embedding(desc_ids)
        if desc_bar_ids is not None:
            x = x + self.bar_embedding(desc_bar_ids)
        x = self.encoder_input(x)
        for layer in self.encoder_layers:
            x = layer(x)
        return x

    def embed_remi(self, remi_ids: Tensor, bar_ids: Tensor | None, position_ids: Tensor | None) -> Tensor:
        x = self.remi_embedding(remi_ids)
        if bar_ids is not None:
            x = x + self.bar_embedding(bar_ids)
        if position_ids is not None:
            x = x + self.position_embedding(position_ids)
        return self.decoder_input(x)

    def decode(
        self,
        remi_ids: Tensor,
        memory: Tensor,
        remi_bar_ids: Tensor | None = None,
        remi_position_ids: Tensor | None = None,
        *,
        return_hidden: bool = False,
    ) -> Tensor:
        """Logits ``(B, L, vocab)`` (or hidden states) of REMI ids ``(B, L)`` given encoder states.

        Like FIGARO, encoder states shorter than the decoder input are zero-padded to its
        length (they then take part in cross-attention); a longer encoder is left as it is,
        which equals FIGARO's padding of the decoder input because attention is causal.
        """
        seq_len = remi_ids.shape[1]
        x = self.embed_remi(remi_ids, remi_bar_ids, remi_position_ids)
        if memory.shape[1] < seq_len:
            memory = F.pad(memory, (0, 0, 0, seq_len - memory.shape[1]))
        for layer in self.decoder_layers:
            x = layer(x, memory)
        return x if return_hidden else self.output(x)

    def forward(
        self,
        desc_ids: Tensor,
        desc_bar_ids: Tensor | None,
        remi_ids: Tensor,
        remi_bar_ids: Tensor | None = None,
        remi_position_ids: Tensor | None = None,
        *,
        return_hidden: bool = False,
    ) -> Tensor:
        """FIGARO's ``Seq2SeqModule.forward``: logits ``(B, L, remi_vocab_size)``."""
        memory = self.encode(desc_ids, desc_bar_ids)
        return self.decode(remi_ids, memory, remi_bar_ids, remi_position_ids, return_hidden=return_hidden)

    @property
    def _decoders(self) -> Sequence[DecoderLayer]:
        """The decoder layers, typed (iterating an ``nn.ModuleList`` gives plain ``nn.Module``)."""
        return cast("Sequence[DecoderLayer]", self.decoder_layers)

    # --- incremental decoding ------------------------------------------------------------

    def start_cache(self, memory: Tensor, capacity: int | None = None) -> DecoderCache:
        """An empty cache for a new decoder window over encoder states ``memory`` ``(B, S, d)``."""
        capacity = capacity or self.config.context_size
        if memory.shape[1] < capacity:  # FIGARO's zero-padding, see ``decode``
            memory = F.pad(memory, (0, 0, 0, capacity - memory.shape[1]))
        b, h, dh = memory.shape[0], self.config.heads, self.config.head_dim
        cross = [layer.cross_attn.project_memory(memory) for layer in self._decoders]
        return DecoderCache(
            self_kv=[memory.new_empty((b, 2, h, capacity, dh)) for _ in self._decoders],
            cross_k=[k.contiguous() for k, _ in cross],
            cross_v=[v.contiguous() for _, v in cross],
            self_tables=[_reversed_tables(layer.self_attn) for layer in self._decoders],
            cross_tables=[_reversed_tables(layer.cross_attn) for layer in self._decoders],
        )

    def decode_cached(
        self,
        remi_ids: Tensor,
        remi_bar_ids: Tensor,
        remi_position_ids: Tensor,
        cache: DecoderCache,
        *,
        fast: bool = True,
    ) -> Tensor:
        """Append ``n`` tokens ``(B, n)`` to ``cache`` and return the last token's logits ``(B, vocab)``.

        The same computation as :meth:`decode` over the whole window, for those positions.
        ``fast=False`` runs single tokens through the general path too (for comparisons).
        """
        start, n = cache.length, remi_ids.shape[1]
        end = start + n
        if end > cache.capacity:
            raise ValueError(f"decoder window full ({cache.capacity} tokens); start a new window")
        x = self.embed_remi(remi_ids, remi_bar_ids, remi_position_ids)
        if n == 1 and fast:
            return self._decode_one(x.view(x.shape[0], -1), cache)
        for i, layer in enumerate(self._decoders):
            x = _cached_self_attention(layer.self_attn, x, cache.self_kv[i], start)
            x = _cached_cross_attention(layer.cross_attn, x, cache.cross_k[i], cache.cross_v[i], start)
            x = layer.ffn(x)
        cache.length = end
        return self.output(x[:, -1])

    def decode_step(self, token_id: int, bar_id: int, position_id: int, cache: DecoderCache) -> Tensor:
        """Append one token (batch of one, plain ints) to ``cache``; its logits ``(vocab,)``.

        The live decoder's hot path: no index tensors are built for the embeddings.
        """
        if cache.length >= cache.capacity:
            raise ValueError(f"decoder window full ({cache.capacity} tokens); start a new window")
        x = self.remi_embedding.weight[token_id] + self.bar_embedding.weight[bar_id]
        x = x + self.position_embedding.weight[position_id] + self.decoder_input.token_type
        norm = self.decoder_input.norm
        x = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        return self._decode_one(x.view(1, -1), cache)[0]

    def _decode_one(self, x: Tensor, cache: DecoderCache) -> Tensor:
        """One embedded token ``(B, d)``: matrix-vector steps with few dispatches (fused projections,
        SDPA, cached tables)."""
        cfg = self.config
        b, h, dh, d = x.shape[0], cfg.heads, cfg.head_dim, cfg.d_model
        t = cache.length
        rel = cfg.max_relative_positions - 1 - t  # first row of the reversed tables this step needs
        eps = cfg.layer_norm_eps
        if cache.step_ops is None:
            cache.step_ops = self._step_ops()
        layers, output = cache.step_ops
        for i, ops in enumerate(layers):
            qkv_proj, self_out, self_norm, query, cross_out, cross_norm, up, down, ffn_norm = ops
            qkv = qkv_proj(x).view(b, 3, h, 1, dh)
            kv = cache.self_kv[i]
            kv[:, :, :, t : t + 1] = qkv[:, 1:]
            keys, values = kv[:, 0, :, : t + 1], kv[:, 1, :, : t + 1]
            mixed = _step_attention(qkv[:, 0], keys, values, cache.self_tables[i], rel)
            x = F.layer_norm(self_out(mixed.view(b, d)) + x, (d,), *self_norm, eps)
            q = query(x).view(b, h, 1, dh)
            mixed = _step_attention(q, cache.cross_k[i], cache.cross_v[i], cache.cross_tables[i], rel)
            x = F.layer_norm(cross_out(mixed.view(b, d)) + x, (d,), *cross_norm, eps)
            x = F.layer_norm(down(F.gelu(up(x))) + x, (d,), *ffn_norm, eps)
        cache.length = t + 1
        return output(x)

    def _step_ops(self) -> tuple[list[_LayerOps], _Projection]:
        """The projections and norms of every decoder layer as plain callables / tensor pairs, so a
        step skips ``nn.Module`` dispatch. Float ``nn.Linear`` becomes ``F.linear`` with its tensors;
        any other projection (e.g. an int8 dynamic-quantized Linear) keeps its own ``forward``."""

        def proj(module: nn.Module) -> Callable[[Tensor], Tensor]:
            if type(module) is nn.Linear:
                return partial(F.linear, weight=module.weight, bias=module.bias)
            return _int8_linear(module) or module.forward

        def norm(module: nn.LayerNorm) -> tuple[Tensor, Tensor]:
            return module.weight, module.bias

        layers = [
            (
                proj(layer.self_attn.qkv),
                proj(layer.self_attn.out),
                norm(layer.self_attn.norm),
                proj(layer.cross_attn.query),
                proj(layer.cross_attn.out),
                norm(layer.cross_attn.norm),
                proj(layer.ffn.up),
                proj(layer.ffn.down),
                norm(layer.ffn.norm),
            )
            for layer in self._decoders
        ]
        return layers, proj(self.output)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _int8_linear(module: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """An int8 dynamic-quantized Linear as a direct call of its operator, or None for anything else.

    Same operator and arguments as the module's ``forward`` (bit-identical), without the module's
    checks and the operator packet's Python dispatch (those were ~12 % of a step's profile; the
    CPU per decoded bar fell ~8 %, docs/live.md).
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    if type(module) is not DynamicLinear or getattr(module, "version", None) != 4:
        return None
    packed = module._packed_params
    if packed.dtype != torch.qint8:
        return None
    return partial(
        torch.ops.quantized.linear_dynamic.default, W_prepack=packed._packed_params, reduce_range=True
    )


def _step_attention(
    q: Tensor, keys: Tensor, values: Tensor, tables: tuple[Tensor, Tensor] | None, first_row: int
) -> Tensor:
    """Attention of one query ``(B, h, 1, dh)`` over ``keys``/``values`` ``(B, h, T, dh)``.

    BERT's relative_key_query score ``(q·k + q·e + k·e) / sqrt(dh)`` is computed as SDPA of
    ``q`` against ``k + e`` with the additive mask ``k·e / sqrt(dh)``; for a query at position
    ``t`` the rows ``e(t - r)``, r = 0..T-1, are one slice of the reversed table.
    """
    if tables is None:
        return F.scaled_dot_product_attention(q, keys, values)
    table, scaled = tables
    n = keys.shape[-2]
    e, e_scaled = table[first_row : first_row + n], scaled[first_row : first_row + n]
    mask = torch.linalg.vecdot(keys, e_scaled).unsqueeze(-2)
    return F.scaled_dot_product_attention(q, keys + e, values, attn_mask=mask)


def _cached_self_attention(attn: Attention, x: Tensor, kv_cache: Tensor, start: int) -> Tensor:
    n = x.shape[1]
    end = start + n
    q, k, v = (_split_heads(t, attn.heads) for t in attn.qkv(x).chunk(3, dim=-1))
    kv_cache[:, 0, :, start:end] = k
    kv_cache[:, 1, :, start:end] = v
    keys, values = kv_cache[:, 0, :, :end], kv_cache[:, 1, :, :end]
    mixed = attn.scores_and_mix(q, keys, values, q_offset=start, causal=True)
    return attn.norm(attn.out(_merge_heads(mixed)) + x)


def _cached_cross_attention(attn: Attention, x: Tensor, k: Tensor, v: Tensor, start: int) -> Tensor:
    q = _split_heads(attn.query(x), attn.heads)
    mixed = attn.scores_and_mix(q, k, v, q_offset=start, causal=False)
    return attn.norm(attn.out(_merge_heads(mixed)) + x)
