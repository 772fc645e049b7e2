"""Planner building blocks: token classes, the LSTMs and their NumPy stepper, persistence, losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e2m_live.description.grammar import parse, validate
from e2m_live.planner.assemble import assemble
from e2m_live.planner.classes import (
    ACOUSTIC_PROGRAMS,
    ELECTRIC_PROGRAMS,
    STREAM_VOCAB,
    RelativeChord,
    relative_chord,
)
from e2m_live.planner.examples import batch_examples, example_from_tokens, normalise_raw_features
from e2m_live.planner.inference import LSTMStepper
from e2m_live.planner.model import (
    OrderedClassLSTM,
    OrderedLSTMConfig,
    StreamLSTM,
    StreamLSTMConfig,
    load_model,
    save_model,
)
from e2m_live.planner.sampling import BarPlan, draw
from training.planner.train import ordered_metrics, soft_labels


def test_relative_chords_transpose_to_any_key() -> None:
    assert relative_chord("A:min", 0) == RelativeChord(9, "min")
    assert relative_chord("A:min", 9) == RelativeChord(0, "min")
    assert RelativeChord(0, "min").absolute(9) == "A:min"
    assert RelativeChord(7, "dom7").absolute(2) == "A:dom7"
    assert relative_chord("N:N", 5).absolute(3) == "N:N"
    with pytest.raises(ValueError):
        relative_chord("H:maj", 0)


def test_stream_bar_round_trip_sorts_and_deduplicates_instruments() -> None:
    ids = STREAM_VOCAB.encode_bar(["drum", "Acoustic Grand Piano", "drum"], ["A:min", "G:maj"], key=9)
    assert ids[-1] == STREAM_VOCAB.END_BAR
    assert ids[2] == STREAM_VOCAB.END_INSTRUMENTS
    instruments, chords = STREAM_VOCAB.decode_bar(ids, key=9)
    assert instruments == ("Acoustic Grand Piano", "drum")
    assert chords == ("A:min", "G:maj")
    # The same relative stream in C: the chords move down a major sixth.
    assert STREAM_VOCAB.decode_bar(ids, key=0)[1] == ("C:min", "A#:maj")


def test_instrument_families_do_not_overlap() -> None:
    assert not ACOUSTIC_PROGRAMS & ELECTRIC_PROGRAMS
    assert 0 in ACOUSTIC_PROGRAMS and 30 in ELECTRIC_PROGRAMS and 81 in ELECTRIC_PROGRAMS


def test_normalise_raw_features_clamps_and_handles_unknown_key() -> None:
    vector, key = normalise_raw_features([0.5, 0.5, -80.0, 0, 0.5, 0.5, -1, 1, 4, 300.0])
    assert key is None
    assert vector[2] == 0.0  # loudness clamped to -60 dB
    assert vector[9] == 1.0  # tempo clamped to 240
    _, key = normalise_raw_features([0.5, 0.5, -8, 0, 0.5, 0.5, 9, 0, 4, 120])
    assert key == 9
    with pytest.raises(ValueError):
        normalise_raw_features([0.5] * 9)


def _random_ordered(
    layers: int = 1, instrument_embedding: int = 0, context: tuple[str, ...] = ()
) -> OrderedClassLSTM:
    torch.manual_seed(1)
    config = OrderedLSTMConfig(
        name="mean_pitch",
        hidden=24,
        layers=layers,
        instrument_embedding=instrument_embedding,
        context=list(context),
    )
    return OrderedClassLSTM(config).eval()


def _random_stream(layers: int = 1) -> StreamLSTM:
    torch.manual_seed(2)
    config = StreamLSTMConfig(vocab_size=STREAM_VOCAB.size, hidden=32, embedding=8, layers=layers)
    return StreamLSTM(config).eval()


@pytest.mark.parametrize(
    ("layers", "instrument_embedding", "context"),
    [
        (1, 0, ()),
        (2, 0, ()),
        (1, 8, ()),
        (1, 8, ("note_density", "mean_velocity")),
        (2, 0, ("note_density",)),
    ],
)
def test_numpy_stepper_matches_torch_forward(layers: int, instrument_embedding: int, context: tuple) -> None:
    features = torch.rand(3, 10)
    ordered = _random_ordered(layers, instrument_embedding, context)
    previous = torch.randint(0, 34, (3, 12))
    instruments = (torch.rand(3, 12, 129) < 0.05).float()
    bins = torch.randint(0, 33, (3, 12, len(context)))
    with torch.no_grad():
        reference = ordered(features, previous, instruments, bins).numpy()
    stepper = LSTMStepper(ordered)
    assert stepper.uses_instruments == bool(instrument_embedding)
    assert stepper.context_names == context
    extra = stepper.instrument_gates(instruments.numpy()) if instrument_embedding else None
    if context:
        gates = stepper.context_gates(bins.numpy())
        extra = gates if extra is None else extra + gates
    constant, state = stepper.start(features.numpy())
    for t in range(12):
        gates = None if extra is None else extra[:, t]
        logits, state = stepper.step(constant, previous[:, t].numpy(), t, state, gates)
        np.testing.assert_allclose(logits, reference[:, t], atol=1e-4)
    if instrument_embedding and not context:
        with pytest.raises(ValueError, match="instruments"):
            ordered(features, previous)
    if context:
        with pytest.raises(ValueError, match="pass them"):
            ordered(features, previous, instruments)

    stream = _random_stream(layers)
    tokens = torch.randint(0, STREAM_VOCAB.size, (3, 20))
    bars = torch.sort(torch.randint(0, 12, (3, 20)), dim=1).values
    with torch.no_grad():
        reference = stream(features, tokens, bars).numpy()
    stepper = LSTMStepper(stream)
    constant, state = stepper.start(features.numpy())
    for t in range(20):
        logits, state = stepper.step(constant, tokens[:, t].numpy(), bars[:, t].numpy(), state)
        np.testing.assert_allclose(logits, reference[:, t], atol=1e-4)


def test_stream_model_ignores_the_key() -> None:
    stream = _random_stream()
    features = torch.rand(1, 10)
    other_key = features.clone()
    other_key[0, 6] = 1.0 - other_key[0, 6]
    tokens = torch.randint(0, STREAM_VOCAB.size, (1, 8))
    bars = torch.zeros(1, 8, dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(stream(features, tokens, bars), stream(other_key, tokens, bars))


def test_save_and_load_round_trip(tmp_path) -> None:
    for model in (_random_ordered(), _random_ordered(1, 4, ("note_density",)), _random_stream()):
        path = tmp_path / "m.safetensors"
        save_model(model, path)
        loaded = load_model(path)
        assert type(loaded) is type(model)
        assert loaded.config == model.config
        for key, value in model.state_dict().items():
            assert torch.equal(value, loaded.state_dict()[key])


def test_load_model_rejects_foreign_safetensors(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "x.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="no planner config"):
        load_model(path)


def test_soft_labels_are_gaussians_over_bins() -> None:
    labels = soft_labels(torch.tensor([0, 16, 32]), 33, sigma=1.0)
    assert torch.allclose(labels.sum(-1), torch.ones(3))
    assert labels.argmax(-1).tolist() == [0, 16, 32]
    assert labels[1, 15] == pytest.approx(labels[1, 17])
    assert labels[1, 15] < labels[1, 16]
    assert torch.equal(
        soft_labels(torch.tensor([4]), 33, sigma=0.0)[0],
        torch.nn.functional.one_hot(torch.tensor(4), 33).float(),
    )


def test_kl_is_zero_for_a_perfect_soft_prediction_and_accuracy_counts_argmax() -> None:
    targets = torch.tensor([[3, 10, -1]])
    perfect = torch.log(soft_labels(targets.clamp(min=0), 33, 1.0).clamp(min=1e-30))
    m = ordered_metrics(perfect, targets, sigma=1.0)
    assert m["kl"] == pytest.approx(0.0, abs=1e-4)
    assert m["accuracy"] == 1.0 and m["n"] == 2
    shifted = torch.roll(perfect, 2, dims=-1)
    assert ordered_metrics(shifted, targets, sigma=1.0)["kl"] > 0.5


def test_draw_never_picks_a_disallowed_entry() -> None:
    rng = np.random.default_rng(0)
    logits = np.zeros((500, 6), dtype=np.float32)
    logits[:, 0] = 50.0  # most likely, but not allowed
    allowed = np.zeros((500, 6), dtype=bool)
    allowed[:, [2, 5]] = True
    picks = draw(logits, 1.0, rng, allowed)
    assert set(picks.tolist()) == {2, 5}
    assert draw(logits, 0.0, rng, allowed).tolist() == [2] * 500


def test_assemble_writes_figaro_order_and_rejects_invalid_bars() -> None:
    plans = [
        BarPlan(5, 20, 15, 18, ("Acoustic Grand Piano", "drum"), ("A:min", "E:min")),
        BarPlan(6, 21, 15, 18, ("Acoustic Grand Piano",), ("A:min",)),
    ]
    description = assemble(plans, (3, 4), first_bar=5)
    tokens = description.tokens()
    validate(tokens)
    assert tokens[:8] == [
        "Bar_5",
        "Time Signature_3/4",
        "Note Density_5",
        "Mean Velocity_20",
        "Mean Pitch_15",
        "Mean Duration_18",
        "Instrument_Acoustic Grand Piano",
        "Instrument_drum",
    ]
    from e2m_live.description.grammar import GrammarError

    with pytest.raises(GrammarError):  # notes without an instrument
        assemble([BarPlan(5, 20, 15, 18, (), ("A:min",))], (4, 4))
    with pytest.raises(GrammarError):  # a bar without a chord after a bar with one
        assemble([plans[0], BarPlan(5, 20, 15, 18, ("drum",), ())], (4, 4))


def test_examples_from_reference_descriptions(reference_dir) -> None:
    import json

    data = json.loads((reference_dir / "figaro_reference_outputs.json").read_text())
    tokens = next(v["description"] for v in data.values() if "description" in v)
    bars = parse(tokens).bars[:12]
    window = [t for bar in bars for t in bar.tokens()]
    raw = [0.5, 0.5, -8, 0, 0.5, 0.5, 2, 1, 4, 120]
    example = example_from_tokens(window, raw, "song")
    assert example.bins.shape == (len(bars), 4)
    assert example.stream is not None
    assert example.stream.count(STREAM_VOCAB.END_BAR) == len(bars)
    batch = batch_examples([example, example_from_tokens(window[: len(bars[0].tokens())], raw, "b")])
    assert batch.bins.shape == (2, len(bars), 4)
    assert batch.instruments.shape == (2, len(bars), 129)
    assert batch.instruments[0, 0].sum() == len(set(bars[0].instruments))
    assert (batch.bins[1, 1:] == -1).all()
    assert batch.stream_inputs[0, 0] == STREAM_VOCAB.START
    np.testing.assert_array_equal(batch.stream_inputs[0, 1 : len(example.stream)], example.stream[:-1])
    # The bar index of every target counts the bar ends before it.
    assert batch.stream_bars[0, len(example.stream) - 1] == len(bars) - 1
