"""Bar/position ids and training examples exactly as FIGARO's dataset builds them."""

from __future__ import annotations

import json
import random

import pytest
import torch

from e2m_live.figaro.inputs import (
    description_model_inputs,
    encode_description,
    encode_remi,
    filter_description,
    make_training_example,
    remi_model_inputs,
    training_windows,
)


def figaro_bar_and_position_ids(events: list[str]) -> tuple[list[int], list[int]]:
    """FIGARO's ``get_bars`` + ``get_positions`` (src/datasets.py), restated with loops."""
    bars, count = [], 0
    for e in events:
        count += "Bar_" in e
        bars.append(count)
    positions: list[int | None] = []
    for e in events:
        e = "Position_0" if "Bar_" in e else e
        positions.append(int(e.split("_")[-1]) if "Position_" in e else None)
    if positions[0] is None:
        positions[0] = 0
    for i in range(1, len(positions)):
        if positions[i] is None:
            positions[i] = positions[i - 1]
    return bars, positions  # type: ignore[return-value]


@pytest.fixture(scope="module")
def reference(reference_dir):
    data = json.loads((reference_dir / "figaro_reference_outputs.json").read_text())
    entries = [v for v in data.values() if "remi" in v][:20]
    assert len(entries) == 20
    return entries


def test_remi_bar_and_position_ids_match_figaro(reference):
    for entry in reference:
        events = entry["remi"]
        bars, positions = remi_model_inputs(encode_remi(events))
        want_bars, want_positions = figaro_bar_and_position_ids(events)
        assert bars.tolist() == want_bars
        assert positions.tolist() == want_positions


def test_description_bar_ids_match_figaro(reference):
    for entry in reference:
        desc = entry["description"]
        want, count = [], 0
        for e in desc:
            count += "Bar_" in e
            want.append(count)
        assert description_model_inputs(encode_description(desc)).tolist() == want


def test_specials_get_bar_and_position_zero():
    ids = encode_remi(["<bos>", "Bar_1", "Time Signature_4/4", "Position_7", "Chord_C:maj", "<eos>", "<pad>"])
    bars, positions = remi_model_inputs(ids)
    assert bars.tolist() == [0, 1, 1, 1, 1, 0, 0]
    assert positions.tolist() == [0, 0, 0, 7, 7, 0, 0]
    desc = encode_description(["<bos>", "Bar_1", "Chord_C:maj", "<eos>"])
    assert description_model_inputs(desc).tolist() == [0, 1, 1, 0]


def test_bad_ids_and_tokens_are_clear_errors():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        remi_model_inputs([0, 5000])
    with pytest.raises(ValueError, match="1-d"):
        remi_model_inputs(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown REMI tokens"):
        encode_remi(["Bar_1", "Nope_3"])


def test_training_windows_follow_figaro():
    assert training_windows(10, 256) == [(0, 257)]
    # 600 events + bos/eos = 602 ids: windows of 257, the last aligned to the end
    assert training_windows(600, 256) == [(0, 257), (257, 514), (345, 602)]


def test_training_example_windows_and_description(reference):
    entry = min((e for e in reference if len(e["remi"]) > 400), key=lambda e: len(e["remi"]))
    remi, desc = encode_remi(entry["remi"]), encode_description(entry["description"])
    context = 64
    windows = training_windows(len(remi), context)
    assert len(windows) > 2
    seq = ["<bos>", *entry["remi"], "<eos>"]
    desc_tokens = entry["description"]
    for w, (start, end) in enumerate(windows):
        ex = make_training_example(desc, remi, context, window=w)
        assert ex["input_ids"].shape == ex["labels"].shape == ex["bar_ids"].shape == ex["position_ids"].shape
        assert len(ex["input_ids"]) == context
        assert torch.equal(ex["labels"][:-1], ex["input_ids"][1:])
        assert encode_remi(seq[start : end - 1]) == ex["input_ids"].tolist()
        first_bar = int(ex["bar_ids"][0])
        assert len(ex["description"]) == len(ex["desc_bar_ids"]) <= context
        if start == 0:
            assert ex["description"][0] == encode_description(["<bos>"])[0]
            assert first_bar == 0
        else:
            # the description starts at the window's first bar
            bar_starts = [i for i, t in enumerate(desc_tokens) if t.startswith("Bar_")]
            expected = [*desc_tokens[bar_starts[max(0, first_bar - 1)] :], "<eos>"][:context]
            assert ex["description"].tolist() == encode_description(expected)
            assert int(ex["desc_bar_ids"][0]) == max(1, first_bar)
    drawn = make_training_example(desc, remi, context, random.Random(3))
    candidates = [
        make_training_example(desc, remi, context, window=w)["input_ids"] for w in range(len(windows))
    ]
    assert any(torch.equal(drawn["input_ids"], c) for c in candidates)


def test_filter_description_drops_ablated_classes():
    desc = ["Bar_1", "Time Signature_4/4", "Note Density_3", "Instrument_drum", "Chord_C:maj"]
    assert filter_description(desc, None) == desc
    no_instruments = ["Bar_1", "Time Signature_4/4", "Note Density_3", "Chord_C:maj"]
    assert filter_description(desc, {"instruments": False}) == no_instruments
    assert filter_description(desc, {"meta": False, "chords": False}) == ["Bar_1", "Instrument_drum"]
