"""The planner under an Arrangement: palettes, muting, the auto ensemble, tonic and cadence."""

from __future__ import annotations

import numpy as np
import pytest

from e2m_live.arrangement import ENSEMBLES, Arrangement, ArrangementError
from e2m_live.description.grammar import validate
from e2m_live.features import MOODS, EmotionFeatures
from e2m_live.planner import PlanError, Planner, Steering
from e2m_live.planner.classes import INSTRUMENT_NAMES, MAX_INSTRUMENTS_PER_BAR
from e2m_live.planner.ensemble import DRAWS_PER_PLAN, LEAD, Ensemble, choose_ensemble, core_of, schedule

MOOD_LIST = list(MOODS.values())


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner.load()


def instruments_of(description) -> list[tuple[str, ...]]:
    return [bar.instruments for bar in description.bars]


@pytest.mark.parametrize("ensemble", sorted(ENSEMBLES))
def test_every_preset_keeps_to_its_palette_and_uses_all_of_it(planner: Planner, ensemble: str) -> None:
    palette = set(ENSEMBLES[ensemble])
    arrangement = Arrangement(ensemble=ensemble)
    for seed in range(3):
        for description in planner.plan_many(MOOD_LIST, seed=seed, arrangement=arrangement):
            validate(description.tokens())
            bars = instruments_of(description)
            assert all(set(bar) <= palette for bar in bars)
            for name in palette:  # every palette instrument plays in >= 80 % of the bars
                assert sum(name in bar for bar in bars) >= 0.8 * len(bars), (name, bars)
            for name in core_of(ENSEMBLES[ensemble]):
                assert all(name in bar for bar in bars)


def test_explicit_list_with_program_numbers_and_drums_is_enforced(planner: Planner) -> None:
    arrangement = Arrangement(instruments=("violin", 33, "drums"))
    wanted = {"Violin", "Electric Bass (finger)", "drum"}
    for description in planner.plan_many(MOOD_LIST, seed=5, arrangement=arrangement):
        bars = instruments_of(description)
        assert all(set(bar) <= wanted for bar in bars)
        assert set().union(*bars) == wanted


def test_a_palette_larger_than_a_bar_rotates_and_stays_valid(planner: Planner) -> None:
    names = tuple(INSTRUMENT_NAMES[p] for p in (0, 4, 24, 27, 33, 40, 48, 52, 56, 65, 73, 81))
    arrangement = Arrangement(instruments=names)
    description = planner.plan(MOODS["happy"], seed=1, arrangement=arrangement)
    validate(description.tokens())
    bars = instruments_of(description)
    assert all(len(bar) <= MAX_INSTRUMENTS_PER_BAR and set(bar) <= set(names) for bar in bars)
    assert set().union(*bars) == set(names)


@pytest.mark.parametrize(
    "arrangement",
    [
        Arrangement(muted=frozenset({"drum", "Acoustic Grand Piano", "Voice Oohs", "Fretless Bass"})),
        Arrangement(ensemble="band", muted=frozenset({"drum"})),
        Arrangement(ensemble="jazz", muted=frozenset({"Tenor Sax", "Acoustic Bass"})),
        Arrangement(instruments=("Acoustic Grand Piano", "drums", "Cello"), muted=frozenset({"drums"})),
    ],
)
def test_muted_instruments_never_play(planner: Planner, arrangement: Arrangement) -> None:
    features = [m.replace(danceability=d) for m in MOOD_LIST for d in (0.2, 0.9)]
    for seed in range(3):
        for description in planner.plan_many(features, seed=seed, arrangement=arrangement):
            played = {name for bar in description.bars for name in bar.instruments}
            assert played and not played & arrangement.excluded()


def test_muted_instruments_never_play_when_the_stream_chooses(planner: Planner) -> None:
    shipped = planner.steering
    muted = frozenset({"Acoustic Grand Piano", "drum", "Bright Acoustic Piano"})
    try:
        planner.set_steering(Steering.off())
        descriptions = planner.plan_many(MOOD_LIST * 10, seed=2, arrangement=Arrangement(muted=muted))
    finally:
        planner.set_steering(shipped)
    played = {name for d in descriptions for bar in d.bars for name in bar.instruments}
    assert played and not played & muted


def test_muting_every_instrument_is_a_plan_error(planner: Planner) -> None:
    with pytest.raises(PlanError, match="muted"):
        planner.plan(MOODS["sad"], seed=0, arrangement=Arrangement(muted=frozenset(INSTRUMENT_NAMES)))
    with pytest.raises(ArrangementError, match="muted"):  # a preset with all its instruments muted
        planner.plan(
            MOODS["sad"],
            seed=0,
            arrangement=Arrangement(ensemble="piano", muted=frozenset({"Acoustic Grand Piano"})),
        )
    with pytest.raises(PlanError, match="Arrangement"):
        planner.plan(MOODS["sad"], seed=0, arrangement="band")  # type: ignore[arg-type]


def share_with(planner: Planner, features: EmotionFeatures, instrument: str, n: int = 40) -> float:
    descriptions = planner.plan_many([features] * n, seed=9)
    return float(np.mean([any(instrument in bar.instruments for bar in d.bars) for d in descriptions]))


def test_danceability_brings_drums_and_bass_in_auto(planner: Planner) -> None:
    for mood in ("calm", "happy", "angry"):
        low = MOODS[mood].replace(danceability=0.1)
        high = MOODS[mood].replace(danceability=0.9)
        assert share_with(planner, high, "drum") >= 0.8
        assert share_with(planner, low, "drum") <= 0.2
    bass = ("Acoustic Bass", "Electric Bass (finger)", "Fretless Bass", "Electric Bass (pick)")
    high, low = (planner.plan_many([MOODS["calm"].replace(danceability=d)] * 40, seed=4) for d in (0.9, 0.1))

    def bass_share(descriptions) -> float:
        return float(np.mean([any(set(bar.instruments) & set(bass) for bar in d.bars) for d in descriptions]))

    assert bass_share(high) > bass_share(low) + 0.4


def test_auto_is_rarely_a_solo_and_follows_acousticness_and_instrumentalness(planner: Planner) -> None:
    default = planner.plan_many([EmotionFeatures()] * 40, seed=3)
    solos = [len({n for bar in d.bars for n in bar.instruments}) == 1 for d in default]
    assert np.mean(solos) <= 0.4

    def voice_share(instrumentalness: float) -> float:
        features = EmotionFeatures(instrumentalness=instrumentalness)
        voices = {"Voice Oohs", "Choir Aahs", "Synth Choir", "Lead 6 (voice)"}
        plans = planner.plan_many([features] * 40, seed=6)
        return float(np.mean([any(set(bar.instruments) & voices for bar in d.bars) for d in plans]))

    assert voice_share(0.05) >= 0.8
    assert voice_share(0.95) <= 0.1


def test_same_seed_same_plan_under_an_arrangement(planner: Planner) -> None:
    for arrangement in (Arrangement(), Arrangement(ensemble="rock"), Arrangement(key_lock=0.0)):
        first = planner.plan(MOODS["tense"], seed=21, arrangement=arrangement).tokens()
        assert planner.plan(MOODS["tense"], seed=21, arrangement=arrangement).tokens() == first
    palettes = {instruments_of(planner.plan(EmotionFeatures(), seed=s))[-1] for s in range(8)}
    assert len(palettes) > 2  # the auto ensemble depends on the seed


def test_temperature_zero_ignores_the_seed_under_an_arrangement(planner: Planner) -> None:
    for arrangement in (Arrangement(), Arrangement(ensemble="orchestra")):
        one = planner.plan(MOODS["calm"], seed=1, temperature=0, arrangement=arrangement)
        two = planner.plan(MOODS["calm"], seed=2, temperature=0, arrangement=arrangement)
        assert one.tokens() == two.tokens()


def random_features(rng: np.random.Generator) -> EmotionFeatures:
    unit = rng.uniform(size=5)
    return EmotionFeatures(
        energy=float(unit[0]),
        valence=float(unit[1]),
        instrumentalness=float(unit[2]),
        danceability=float(unit[3]),
        acousticness=float(unit[4]),
        key=int(rng.integers(0, 12)),
        mode=int(rng.integers(0, 2)),
        time_signature=int(rng.integers(3, 8)),
    )


def test_random_features_and_arrangements_always_give_valid_plans(planner: Planner) -> None:
    rng = np.random.default_rng(14)
    choices = [Arrangement(), *(Arrangement(ensemble=e) for e in ENSEMBLES)]
    for _ in range(12):
        names = rng.choice(len(INSTRUMENT_NAMES), size=int(rng.integers(1, 14)), replace=False)
        choices.append(
            Arrangement(instruments=tuple(INSTRUMENT_NAMES[i] for i in names), key_lock=float(rng.uniform()))
        )
    for index, arrangement in enumerate(choices):
        features = [random_features(rng) for _ in range(20)]
        bars = int(rng.integers(1, 17))
        temperature = float(rng.choice([0.0, 0.7, 1.0, 1.5]))
        palette = arrangement.palette()
        for description in planner.plan_many(
            features, bars=bars, seed=index, temperature=temperature, arrangement=arrangement
        ):
            validate(description.tokens())
            assert len(description.bars) == bars
            if palette is not None:
                assert all(set(bar.instruments) <= set(palette) for bar in description.bars)


def tonic_first_share(planner: Planner, key_lock: float) -> float:
    features = [m.replace(key=k) for m in MOOD_LIST for k in (0, 5, 9)] * 4
    arrangement = Arrangement(key_lock=key_lock)
    hits = []
    for f, d in zip(features, planner.plan_many(features, seed=8, arrangement=arrangement), strict=True):
        root, _, quality = d.bars[0].chords[0].partition(":")
        names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
        tonic = names[f.key]
        hits.append(root == tonic and quality in (("maj", "maj7") if f.mode else ("min", "min7")))
    return float(np.mean(hits))


def test_key_lock_favours_a_tonic_opening(planner: Planner) -> None:
    locked, free = tonic_first_share(planner, 1.0), tonic_first_share(planner, 0.0)
    assert locked >= 0.8
    assert locked > free + 0.2


def test_key_lock_favours_a_cadence_into_the_tonic(planner: Planner) -> None:
    def ends_on_tonic(key_lock: float) -> float:
        plans = planner.plan_many(
            [MOODS["happy"], MOODS["sad"]] * 30, seed=12, arrangement=Arrangement(key_lock=key_lock)
        )
        tonics = ("C:maj", "C:maj7", "A:min", "A:min7")  # happy is in C major, sad in A minor
        return float(np.mean([d.bars[-1].chords[-1] in tonics for d in plans]))

    assert ends_on_tonic(1.0) > ends_on_tonic(0.0) + 0.3


def test_choose_ensemble_is_a_function_of_its_draws_and_respects_exclusions() -> None:
    u = np.random.default_rng(0).random(DRAWS_PER_PLAN)
    features = MOODS["happy"]
    assert choose_ensemble(features, u) == choose_ensemble(features, u)
    excluded = {"Acoustic Grand Piano", "Electric Guitar (clean)", "Electric Piano 1", "drum"}
    for seed in range(30):
        u = np.random.default_rng(seed).random(DRAWS_PER_PLAN)
        chosen = choose_ensemble(features.replace(danceability=1.0), u, excluded)
        assert chosen.instruments and not set(chosen.instruments) & excluded
        assert chosen.core <= set(chosen.instruments)
    with pytest.raises(ValueError, match="muted"):
        choose_ensemble(features, u, set(INSTRUMENT_NAMES))


BRIGHT = {
    "Trumpet",
    "Brass Section",
    "Synth Brass 1",
    "Electric Guitar (clean)",
    "Acoustic Guitar (steel)",
    "Flute",
}
DARK = {"Distortion Guitar", "Rock Organ", "String Ensemble 1", "Violin", "Choir Aahs", "Synth Strings 1"}


def timbre_shares(features: EmotionFeatures, draws: np.ndarray) -> tuple[float, float]:
    """The mean number of bright and of dark instruments per auto ensemble over ``draws``."""
    bands = [set(choose_ensemble(features, u).instruments) for u in draws]
    return float(np.mean([len(b & BRIGHT) for b in bands])), float(np.mean([len(b & DARK) for b in bands]))


def test_valence_picks_the_timbres_of_the_same_draws() -> None:
    # The eight moods once made two bands (one per side of acousticness): valence picked nothing.
    draws = np.random.default_rng(5).random((300, DRAWS_PER_PLAN))
    for acousticness in (0.1, 0.7):
        features = EmotionFeatures(energy=0.7, acousticness=acousticness, instrumentalness=0.8)
        bright_high, dark_high = timbre_shares(features.replace(valence=0.9), draws)
        bright_low, dark_low = timbre_shares(features.replace(valence=0.1), draws)
        assert bright_high > 1.5 * bright_low and dark_low > 1.5 * dark_high, (
            acousticness,
            (bright_high, bright_low),
            (dark_high, dark_low),
        )
    same = [
        choose_ensemble(MOODS["happy"], u).instruments == choose_ensemble(MOODS["angry"], u).instruments
        for u in draws
    ]
    assert np.mean(same) < 0.05  # same draws, two moods: two bands (it was 10 %)


def test_a_high_energy_band_has_a_lead_beside_its_voice() -> None:
    draws = np.random.default_rng(6).random((300, DRAWS_PER_PLAN))
    leads = {name for name, _ in (*LEAD.acoustic, *LEAD.electric)}

    def lead_share(energy: float) -> float:
        features = EmotionFeatures(energy=energy, instrumentalness=0.0)
        return float(np.mean([bool(set(choose_ensemble(features, u).instruments) & leads) for u in draws]))

    assert lead_share(0.95) >= 0.7
    assert lead_share(0.5) <= 0.1


def test_schedule_keeps_the_core_in_every_bar_and_never_rests_the_last_bar() -> None:
    ensemble = Ensemble(
        ("Acoustic Grand Piano", "Electric Bass (finger)", "Voice Oohs", "drum"),
        frozenset({"Acoustic Grand Piano", "Electric Bass (finger)", "drum"}),
    )
    rng = np.random.default_rng(1)
    rested = 0
    for _ in range(50):
        bars = schedule(ensemble, 12, rng.random((4, 3)))
        assert all(ensemble.core <= set(bar) for bar in bars)
        assert bars[-1] == ensemble.instruments
        voice_bars = sum("Voice Oohs" in bar for bar in bars)
        assert voice_bars >= 10
        rested += voice_bars < 12
    assert 10 < rested < 40  # about half the sections rest the voice for a bar or two
    assert schedule(ensemble, 4, rng.random((4, 3))) == [ensemble.instruments] * 4  # too short to rest


def test_steering_round_trips_with_the_auto_ensemble_flag(planner: Planner) -> None:
    steering = planner.steering
    assert steering.auto_ensemble is True
    assert Steering.from_dict(steering.to_dict()) == steering
    assert Steering.off().auto_ensemble is False


def section_instruments(description) -> set[str]:
    return {name for bar in description.bars for name in bar.instruments}


def test_a_fixed_ensemble_seed_keeps_the_band_across_sections(planner: Planner) -> None:
    features = EmotionFeatures(danceability=0.5)
    plans = [planner.plan(features, seed=s, ensemble_seed=7) for s in range(12)]
    bands = {frozenset(section_instruments(p)) for p in plans}
    assert len(bands) == 1  # twelve sections (new seeds), one band
    free = {frozenset(section_instruments(planner.plan(features, seed=s))) for s in range(12)}
    assert len(free) > 1  # without it the auto draw changes with every seed


def test_with_a_fixed_ensemble_seed_drums_come_in_once_as_danceability_rises(planner: Planner) -> None:
    levels = np.linspace(0.0, 1.0, 21)
    for ensemble_seed in range(8):
        drums = [
            "drum"
            in section_instruments(
                planner.plan(EmotionFeatures(danceability=float(d)), seed=0, ensemble_seed=ensemble_seed)
            )
            for d in levels
        ]
        assert drums[-1] and not drums[0], drums
        first = drums.index(True)
        assert all(drums[first:]), drums  # once in, they stay in
