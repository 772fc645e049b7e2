"""Our vocabularies must equal FIGARO's token by token (strings and ids)."""

from __future__ import annotations

import json

from e2m_live.description.vocab import (
    DESCRIPTION_VOCAB_SIZE,
    DURATION_BINS,
    REMI_VOCAB_SIZE,
    DescriptionVocab,
    RemiVocab,
)


def test_vocabularies_match_reference_token_by_token(reference_dir):
    ref = json.loads((reference_dir / "figaro_vocab.json").read_text())
    for ours, theirs in ((RemiVocab().itos, ref["remi"]), (DescriptionVocab().itos, ref["description"])):
        assert len(ours) == len(theirs)
        mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
        assert mismatches == []


def test_sizes_and_round_trip():
    remi, desc = RemiVocab(), DescriptionVocab()
    assert len(remi) == REMI_VOCAB_SIZE == 1357
    assert len(desc) == DESCRIPTION_VOCAB_SIZE == 965
    toks = ["Bar_0", "Position_3", "Instrument_drum", "Pitch_drum_36", "Velocity_20", "Duration_5"]
    assert remi.decode(remi.encode(toks)) == toks
    assert remi["no such token"] == remi.unk_id
    assert len(DURATION_BINS) == 58
