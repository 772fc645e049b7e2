"""The shipped FIGARO model (models/figaro-compact): loads, has the configured size, decodes real bars."""

from __future__ import annotations

from pathlib import Path

import pretty_midi
import pytest
import torch

from e2m_live.description.extract import extract
from e2m_live.description.remi import tokens_to_bars
from e2m_live.description.vocab import BAR_KEY, DRUM_INSTRUMENT, INSTRUMENT_KEY
from e2m_live.figaro.checkpoint import load_pretrained
from e2m_live.figaro.config import FigaroConfig
from e2m_live.figaro.decode import IncrementalDecoder
from e2m_live.figaro.model import FigaroModel

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "figaro-compact"
#: One bar of POP909-style multi-instrument description (as the extractor writes it).
POP_BAR = [
    "Bar_1", "Time Signature_4/4", "Note Density_12", "Mean Velocity_24", "Mean Pitch_15", "Mean Duration_14",
    "Instrument_Acoustic Grand Piano", "Instrument_Electric Bass (finger)", "Instrument_drum",
    "Chord_C:maj", "Chord_G:maj",
]  # fmt: skip


@pytest.fixture(scope="module")
def shipped() -> FigaroModel:
    torch.set_num_threads(1)
    return load_pretrained(MODEL_DIR)


def first_bar(description: list[str]) -> list[str]:
    """The tokens of the first described bar (``Bar_*`` included)."""
    starts = [i for i, t in enumerate(description) if t.startswith(BAR_KEY + "_")]
    end = starts[1] if len(starts) > 1 else len(description)
    return description[starts[0] : end]


def instrument_name(program: int, is_drum: bool) -> str:
    return DRUM_INSTRUMENT if is_drum else pretty_midi.program_to_instrument_name(program)


def decode_one_bar(model: FigaroModel, description_bar: list[str]) -> list[str]:
    decoder = IncrementalDecoder(model, constrained=True)
    # 96 tokens (~20 notes) keep the test fast on a busy machine; the grammar closes the bar there
    bars = list(
        decoder.generate_bars(description_bar, temperature=1.0, top_p=0.95, seed=0, max_tokens_per_bar=96)
    )
    assert len(bars) == 1
    return bars[0]


def assert_valid_bar(remi: list[str], description_bar: list[str]) -> None:
    described = {t.split("_", 1)[1] for t in description_bar if t.startswith(INSTRUMENT_KEY + "_")}
    assert remi[0] == "Bar_1"
    bars = tokens_to_bars(remi)
    assert len(bars) == 1
    notes = bars[0].notes
    assert notes, f"no notes decoded from {remi[:20]}"
    used = {instrument_name(n.program, n.is_drum) for n in notes}
    assert used <= described, f"instruments {used - described} are not in the description"
    remi_instruments = {t.split("_", 1)[1] for t in remi if t.startswith(INSTRUMENT_KEY + "_")}
    assert remi_instruments <= described
    for n in notes:
        assert 0 <= n.pitch < 128 and 0 < n.velocity < 128
        assert n.duration > 0 and 0 <= n.start < bars[0].numerator * 4 / bars[0].denominator


def test_shipped_model_loads_with_the_configured_size(shipped: FigaroModel):
    config = FigaroConfig.load(MODEL_DIR / "config.json")
    assert shipped.config == config
    compact = FigaroConfig.compact()
    for field in ("d_model", "encoder_layers", "decoder_layers", "heads", "ffn", "context_size"):
        assert getattr(config, field) == getattr(compact, field), field
    assert shipped.num_parameters() == FigaroModel(config).num_parameters()
    assert 8_000_000 < shipped.num_parameters() < 9_500_000
    assert not shipped.training
    assert all(torch.isfinite(p).all() for p in shipped.parameters())


def test_shipped_model_decodes_a_multi_instrument_bar(shipped: FigaroModel):
    remi = decode_one_bar(shipped, POP_BAR)
    assert_valid_bar(remi, POP_BAR)


def test_shipped_model_decodes_a_real_corpus_bar(shipped: FigaroModel, datasets_dir: Path):
    path = sorted((datasets_dir / "nottingham").glob("*.mid"))[0]
    description_bar = first_bar(extract(path).description)
    remi = decode_one_bar(shipped, description_bar)
    assert_valid_bar(remi, description_bar)
