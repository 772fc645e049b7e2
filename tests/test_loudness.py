"""Loudness is level: the requested dB scale the decoded velocities (General MIDI's curve)."""

from __future__ import annotations

import pytest

from e2m_live.features import EmotionFeatures
from e2m_live.loudness import REFERENCE_DB, scale_velocities, velocity_gain
from e2m_live.music import Note


def test_gain_follows_the_general_midi_curve():
    assert velocity_gain(REFERENCE_DB) == pytest.approx(1.0)
    assert velocity_gain(REFERENCE_DB + 40) == pytest.approx(10.0)
    levels = [-60.0, -30.0, -13.5, -7.4, -4.3, 0.0]
    gains = [velocity_gain(db) for db in levels]
    assert gains == sorted(gains) and len(set(gains)) == len(gains)
    assert velocity_gain(-60.0) < 0.05 < 1.0 < velocity_gain(0.0) < 1.6


def test_scaled_velocities_stay_midi_velocities():
    notes = [
        Note(60, 100, 0.0, 1.0),
        Note(36, 5, 0.0, 0.25, is_drum=True),
        Note(64, 127, 1.0, 1.0, program=33),
    ]
    loud = scale_velocities(notes, 3.0)
    quiet = scale_velocities(notes, 0.001)
    assert [n.velocity for n in loud] == [127, 15, 127]
    assert [n.velocity for n in quiet] == [1, 1, 1]
    assert [(n.pitch, n.start, n.duration, n.program, n.is_drum) for n in loud] == [
        (n.pitch, n.start, n.duration, n.program, n.is_drum) for n in notes
    ]
    assert scale_velocities(notes, 1.0) == notes


def test_the_pipeline_plays_one_decode_at_the_requested_level():
    from e2m_live.pipeline import DecodingOptions, Pipeline

    pipeline = Pipeline.load(threads=1)
    soft, loud = EmotionFeatures(loudness=-20.0), EmotionFeatures(loudness=-3.0)
    description = pipeline.plan(soft, bars=1, seed=3)
    options = DecodingOptions(max_tokens_per_bar=96)
    bars = {
        f.loudness: [g.bar for g in pipeline.decode(description, f, seed=4, options=options)]
        for f in (soft, loud)
    }
    soft_notes, loud_notes = bars[-20.0][0].notes, bars[-3.0][0].notes
    assert soft_notes and [n.pitch for n in soft_notes] == [n.pitch for n in loud_notes]  # same decode
    ratio = sum(n.velocity for n in loud_notes) / sum(n.velocity for n in soft_notes)
    assert ratio > 2.0  # 17 dB apart: 10 ** (17 / 40) = 2.66 before clipping at 127
