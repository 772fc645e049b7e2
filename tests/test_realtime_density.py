"""The live model generator plans no denser than its machine decodes in time (issue 20's late bars)."""

from __future__ import annotations

import pytest

from e2m_live.features import EmotionFeatures
from e2m_live.figaro.constraints import density_notes
from e2m_live.generators.realtime import (
    MIN_DENSITY_BIN,
    REALTIME_SHARE,
    TOKENS_PER_NOTE,
    DecodeRate,
    cap_density,
    density_cap,
)
from e2m_live.models import missing_models


def test_the_rate_starts_from_its_first_measure_then_follows_smoothly() -> None:
    rate = DecodeRate(initial=150.0, smoothing=0.5)
    rate.add(0, 1.0)  # nothing measured
    assert rate.tokens_per_second == 150.0 and rate.measured == 0
    rate.add(400, 2.0)
    assert rate.tokens_per_second == 200.0
    rate.add(100, 1.0)
    assert rate.tokens_per_second == 150.0 and rate.measured == 2


def test_the_cap_is_what_decodes_in_the_bars_share_of_time() -> None:
    for rate in (50.0, 170.0, 400.0, 2000.0):
        for seconds, positions in ((2.0, 48), (1.5, 36), (1.0, 48)):
            cap = density_cap(rate, seconds, positions)
            budget = rate * seconds * REALTIME_SHARE
            assert cap >= MIN_DENSITY_BIN
            if cap > MIN_DENSITY_BIN:
                assert density_notes(cap, positions) * TOKENS_PER_NOTE <= budget
            assert density_notes(cap + 1, positions) * TOKENS_PER_NOTE > budget
    assert density_cap(1.0, 2.0, 48) == MIN_DENSITY_BIN  # a hopeless machine still plays a pulse
    assert density_cap(170.0, 2.0, 48) < density_cap(400.0, 2.0, 48) < density_cap(2000.0, 2.0, 48)


def test_cap_density_lowers_only_the_bars_above_the_cap() -> None:
    description = [
        *["Bar_1", "Time Signature_4/4", "Note Density_6", "Mean Velocity_20", "Instrument_drum"],
        *["Bar_2", "Time Signature_4/4", "Note Density_1", "Mean Velocity_20"],
        *["Bar_3", "Time Signature_3/4", "Note Density_6", "Mean Velocity_20"],
    ]
    cap_44 = density_cap(170.0, 2.0, 48)  # 4/4 at 120 BPM
    cap_34 = density_cap(170.0, 1.5, 36)
    capped, count = cap_density(description, 120.0, 170.0)
    assert count == 2 and cap_44 < 6 and cap_34 < 6
    densities = [t for t in capped if t.startswith("Note Density")]
    assert densities == [f"Note Density_{cap_44}", "Note Density_1", f"Note Density_{cap_34}"]
    assert [t for t in capped if not t.startswith("Note Density")] == [
        t for t in description if not t.startswith("Note Density")
    ]
    assert cap_density(description, 120.0, 1e6) == (description, 0)  # a fast machine: no cap


@pytest.mark.skipif(bool(missing_models()), reason="the shipped models are not installed")
def test_a_slow_machine_gets_sparser_bars_in_time() -> None:
    from e2m_live.generators.model import ModelGenerator

    features = EmotionFeatures(energy=0.8, valence=0.7, danceability=0.8, tempo=132)
    notes = {}
    for realtime in (False, True):
        generator = ModelGenerator(warm_start=False, ensemble_seed=3, realtime_density=realtime)
        generator.rate.tokens_per_second = 100.0  # as if the machine were slow
        bars = generator.generate(features, seed=5)
        notes[realtime] = [len(bar.notes) for _, bar in zip(range(3), bars, strict=False)]
        bars.close()
        assert (generator.capped_bars > 0) == realtime
        assert generator.rate.measured >= 3  # the rate is measured as the bars come
    assert sum(notes[True]) < 0.75 * sum(notes[False]), notes
