"""Our FigaroModel computes what FIGARO's ``transformers`` construction computes.

The reference below rebuilds FIGARO's ``Seq2SeqModule`` (description flavour) with its module
names: an ``EncoderDecoderModel`` from two ``BertConfig(position_embedding_type=
"relative_key_query")`` plus ``desc_in``, ``in_layer``, ``bar_embedding``, ``pos_embedding``
and ``out_layer``, and FIGARO's encode/decode (incl. zero-padding encoder and decoder to the
same length). Its weights are mapped into our model by the official-checkpoint converter.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from e2m_live.description.vocab import DESCRIPTION_VOCAB_SIZE, REMI_VOCAB_SIZE
from e2m_live.figaro.checkpoint import config_from_figaro, convert_figaro_state_dict
from e2m_live.figaro.config import FigaroConfig
from e2m_live.figaro.model import FigaroModel

transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def one_thread():
    """Small models on a shared 2-core machine: one thread avoids OpenMP contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL = {
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 96,
    "context_size": 48,
}


class FigaroReference(nn.Module):
    """FIGARO's Seq2SeqModule (description flavour), built the way its code builds it."""

    def __init__(
        self,
        *,
        d_model: int,
        encoder_layers: int,
        decoder_layers: int,
        num_attention_heads: int,
        intermediate_size: int,
        context_size: int,
        relative_cross_attention: bool = False,
    ) -> None:
        super().__init__()
        from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel
        from transformers.models.bert.modeling_bert import BertAttention

        def bert(layers: int):
            return BertConfig(
                vocab_size=1,
                pad_token_id=0,
                hidden_size=d_model,
                num_hidden_layers=layers,
                num_attention_heads=num_attention_heads,
                intermediate_size=intermediate_size,
                max_position_embeddings=1024,
                position_embedding_type="relative_key_query",
            )

        config = EncoderDecoderConfig.from_encoder_decoder_configs(bert(encoder_layers), bert(decoder_layers))
        self.transformer = EncoderDecoderModel(config)
        self.transformer.config.decoder.is_decoder = True
        self.transformer.config.decoder.add_cross_attention = True
        # transformers >= 4.54 changes the relative arithmetic when the cache is on (reference README)
        self.transformer.decoder.config.use_cache = False
        if relative_cross_attention:  # the layout of the released checkpoints (generate.py's patch)
            dec_config = self.transformer.decoder.bert.config
            for i, layer in enumerate(self.transformer.decoder.bert.encoder.layer):
                layer.crossattention = BertAttention(
                    dec_config, position_embedding_type=dec_config.position_embedding_type, layer_idx=i
                )
        self.context_size = context_size
        self.bar_embedding = nn.Embedding(context_size + 1, d_model)
        self.pos_embedding = nn.Embedding(512 + 1, d_model)
        self.desc_in = nn.Embedding(DESCRIPTION_VOCAB_SIZE, d_model)
        self.in_layer = nn.Embedding(REMI_VOCAB_SIZE, d_model)
        self.out_layer = nn.Linear(d_model, REMI_VOCAB_SIZE, bias=False)
        self.hparams = {
            "d_model": d_model,
            "encoder_layers": encoder_layers,
            "decoder_layers": decoder_layers,
            "num_attention_heads": num_attention_heads,
            "intermediate_size": intermediate_size,
            "context_size": context_size,
            "description_flavor": "description",
            "description_options": None,
        }

    def encode(self, z, desc_bar_ids):
        z_emb = self.desc_in(z) + self.bar_embedding(desc_bar_ids)
        out = self.transformer.encoder(inputs_embeds=z_emb, output_hidden_states=True)
        return out.hidden_states[-1]

    def decode(self, x, bar_ids, position_ids, encoder_hidden_states):
        seq_len = x.size(1)
        x_emb = self.in_layer(x) + self.bar_embedding(bar_ids) + self.pos_embedding(position_ids)
        padded = nn.utils.rnn.pad_sequence(
            [x_emb.transpose(0, 1), encoder_hidden_states.transpose(0, 1)], batch_first=True
        )
        x_emb, encoder_hidden_states = padded.transpose(1, 2)
        out = self.transformer.decoder(
            inputs_embeds=x_emb, encoder_hidden_states=encoder_hidden_states, output_hidden_states=True
        )
        return out.hidden_states[-1][:, :seq_len]

    def forward(self, x, z, bar_ids, position_ids, desc_bar_ids):
        hidden = self.decode(x, bar_ids, position_ids, self.encode(z, desc_bar_ids))
        return self.out_layer(hidden)


def randomize(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial weights everywhere (LayerNorms too), so a wrong mapping cannot hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            elif "distance_embedding" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.06 * torch.randn(p.shape, generator=g))


def build_pair(relative_cross_attention: bool, seed: int = 0) -> tuple[FigaroReference, FigaroModel]:
    torch.manual_seed(seed)
    ref = FigaroReference(**SMALL, relative_cross_attention=relative_cross_attention).eval()
    randomize(ref, seed)
    sd = ref.state_dict()
    config = config_from_figaro(ref.hparams, sd)
    ours = FigaroModel(config).eval()
    ours.load_state_dict(convert_figaro_state_dict(sd, config))
    return ref, ours


def random_inputs(batch: int, desc_len: int, remi_len: int, context_size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(0, DESCRIPTION_VOCAB_SIZE, (batch, desc_len), generator=g)
    desc_bar_ids = torch.randint(0, context_size + 1, (batch, desc_len), generator=g)
    x = torch.randint(0, REMI_VOCAB_SIZE, (batch, remi_len), generator=g)
    bar_ids = torch.randint(0, context_size + 1, (batch, remi_len), generator=g)
    position_ids = torch.randint(0, 513, (batch, remi_len), generator=g)
    return z, desc_bar_ids, x, bar_ids, position_ids


@pytest.mark.parametrize("relative_cross_attention", [False, True])
@pytest.mark.parametrize(("desc_len", "remi_len"), [(48, 48), (48, 17), (9, 30), (1, 1), (33, 48)])
def test_encoder_decoder_and_logits_match_transformers(relative_cross_attention, desc_len, remi_len):
    ref, ours = build_pair(relative_cross_attention)
    seed = desc_len + remi_len
    z, dbar, x, bar, pos = random_inputs(2, desc_len, remi_len, SMALL["context_size"], seed=seed)
    with torch.no_grad():
        ref_enc = ref.encode(z, dbar)
        our_enc = ours.encode(z, dbar)
        torch.testing.assert_close(our_enc, ref_enc, atol=1e-4, rtol=0)
        ref_hidden = ref.decode(x, bar, pos, ref_enc)
        our_hidden = ours.decode(x, our_enc, bar, pos, return_hidden=True)
        torch.testing.assert_close(our_hidden, ref_hidden, atol=1e-4, rtol=0)
        ref_logits = ref(x, z, bar, pos, dbar)
        our_logits = ours(z, dbar, x, bar, pos)
    assert our_logits.shape == (2, remi_len, REMI_VOCAB_SIZE)
    torch.testing.assert_close(our_logits, ref_logits, atol=1e-4, rtol=0)
    # the relative terms matter: a model with them switched off must differ
    assert ref_logits.abs().max() > 1e-2


def test_cross_attention_layouts_differ_and_are_detected():
    _, plain = build_pair(False)
    rel_ref, rel = build_pair(True)
    assert not plain.config.relative_cross_attention
    assert rel.config.relative_cross_attention
    extra = sum(p.numel() for n, p in rel_ref.named_parameters() if "crossattention.self.distance" in n)
    assert rel.num_parameters() - plain.num_parameters() == extra > 0


def test_parameter_count_is_figaro_minus_unused_weights():
    ref, ours = build_pair(True)
    unused = sum(
        p.numel()
        for n, p in ref.named_parameters()
        if "word_embeddings" in n or "position_embeddings" in n or "pooler" in n or ".cls." in n
    )
    token_type_rows_unused = 2 * SMALL["d_model"]  # row 1 of the encoder and decoder token-type tables
    total = sum(p.numel() for p in ref.parameters())
    assert ours.num_parameters() == total - unused - token_type_rows_unused


@pytest.mark.parametrize("relative_cross_attention", [False, True])
def test_our_cached_decoding_equals_whole_window_decoding(relative_cross_attention):
    _, ours = build_pair(relative_cross_attention, seed=3)
    cfg = ours.config
    z, dbar, x, bar, pos = random_inputs(1, cfg.context_size, 40, cfg.context_size, seed=5)
    with torch.no_grad():
        memory = ours.encode(z, dbar)
        full = ours.decode(x, memory, bar, pos)
        cache = ours.start_cache(memory)
        steps = [ours.decode_cached(x[:, :7], bar[:, :7], pos[:, :7], cache)]  # prefill
        for i in range(7, 40):
            steps.append(ours.decode_cached(x[:, i : i + 1], bar[:, i : i + 1], pos[:, i : i + 1], cache))
    torch.testing.assert_close(steps[0], full[:, 6], atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.stack(steps[1:], dim=1), full[:, 7:], atol=1e-4, rtol=0)
    assert cache.length == 40
    with torch.no_grad():  # the int-argument hot path of the live decoder
        cache = ours.start_cache(memory)
        ints = [ours.decode_step(int(x[0, i]), int(bar[0, i]), int(pos[0, i]), cache) for i in range(40)]
    torch.testing.assert_close(torch.stack(ints), full[0], atol=1e-4, rtol=0)
    cache.length = cfg.context_size
    with pytest.raises(ValueError, match="window full"):
        ours.decode_cached(x[:, :1], bar[:, :1], pos[:, :1], cache)


def test_config_round_trip(tmp_path):
    cfg = FigaroConfig.compact()
    cfg.save(tmp_path / "config.json")
    assert FigaroConfig.load(tmp_path / "config.json") == cfg
    with pytest.raises(ValueError, match="multiple of heads"):
        FigaroConfig(d_model=100, heads=8)
    with pytest.raises(ValueError, match="unknown FigaroConfig fields"):
        FigaroConfig.from_dict({"d_modle": 3})
