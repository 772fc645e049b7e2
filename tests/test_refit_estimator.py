"""The valence / energy refit on real labels (training.data.refit_estimator), on synthetic descriptor rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from e2m_live.analysis import DESCRIPTOR_NAMES, Calibration, feature_matrix, load_calibration
from e2m_live.features import FEATURE_ORDER
from training.data.refit_estimator import Labelled, agreement, auc, refit, score

VALENCE, ENERGY = FEATURE_ORDER.index("valence"), FEATURE_ORDER.index("energy")


def _split(seed: int, songs: int = 60, per_song: int = 4, spotify_valence=None) -> Labelled:
    """rpbot songs with Spotify labels, EMOPIA and VGMIDI clips with quadrant labels, unlabelled pop909."""
    rng = np.random.default_rng(seed)
    corpora = ("rpbot", "emopia", "vgmidi", "pop909")
    rows, corpus, song, file = [], [], [], []
    for name in corpora:
        for s in range(songs):
            tempo = rng.uniform(70, 170)
            majorness = rng.normal(0, 0.2)
            for k in range(per_song):
                values = {n: rng.uniform(0.0, 1.0) for n in DESCRIPTOR_NAMES}
                values.update(
                    onset_rate=rng.lognormal(1.5, 0.5),
                    pitched_onset_rate=rng.lognormal(1.2, 0.5),
                    drum_onset_rate=rng.lognormal(0.5, 0.5) if name == "rpbot" else 0.0,
                    velocity_mean=rng.uniform(50, 110),
                    velocity_std=8.0,
                    level_db=rng.normal(0, 3),
                    pitch_mean=rng.normal(62, 4),
                    tempo=tempo * rng.uniform(0.98, 1.02),
                    majorness=majorness + rng.normal(0, 0.02),
                    key=float(k),
                    mode=float(majorness > 0),
                    time_signature=4.0,
                )
                rows.append([values[n] for n in DESCRIPTOR_NAMES])
                corpus.append(name)
                song.append(f"{name}:{s}")
                file.append(f"{name}/{s}.mid")
    descriptors = np.asarray(rows)
    corpus_a, song_a = np.asarray(corpus), np.asarray(song)
    tempo = descriptors[:, DESCRIPTOR_NAMES.index("tempo")]
    major = descriptors[:, DESCRIPTOR_NAMES.index("majorness")]
    spotify = np.full((len(rows), len(FEATURE_ORDER)), np.nan)
    is_rpbot = corpus_a == "rpbot"
    if spotify_valence is None:  # Spotify's valence follows tempo on band music
        spotify_valence = lambda t, m: 0.2 + 0.6 * (t - 70) / 100  # noqa: E731
    spotify[is_rpbot, VALENCE] = spotify_valence(tempo[is_rpbot], major[is_rpbot])
    spotify[is_rpbot, ENERGY] = np.log(descriptors[is_rpbot, DESCRIPTOR_NAMES.index("onset_rate")])
    emotion = np.full((len(rows), 2), np.nan)
    labelled = np.isin(corpus_a, ["emopia", "vgmidi"])
    emotion[labelled, 0] = np.sign(major[labelled])  # the piano corpora's valence follows the mode
    emotion[labelled, 1] = np.sign(tempo[labelled] - 120)
    return Labelled(descriptors, corpus_a, song_a, np.asarray(file), spotify, emotion)


def test_auc_and_score() -> None:
    assert auc(np.array([1.0, 2.0, 3.0, 4.0]), np.array([False, False, True, True])) == 1.0
    assert auc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    assert score({"spotify": {"rho_song": 0.5}, "emopia": {"somers_d": 0.1}}) == 0.3


def _a_priori() -> Calibration:
    """The installed calibration with the a-priori composites (its refit dropped)."""
    data = load_calibration().to_dict()
    data.pop("composites", None)
    return Calibration.from_dict(data)


def test_refit_learns_what_the_labels_follow_and_keeps_the_mode(tmp_path: Path) -> None:
    shipped = _a_priori()
    train, val, test = _split(0), _split(1), _split(2)
    refitted, report = refit(shipped, train, val, test)
    entry = report["features"]["valence"]
    assert entry["accepted"] and refitted is not shipped
    assert set(refitted.composites or {}) >= {"valence"}
    assert entry["weights"]["log_tempo"] > 0
    before, after = entry["test_before"], entry["test_after"]
    assert after["spotify"]["rho_song"] > before["spotify"]["rho_song"] + 0.3
    assert after["emopia"]["auc"] > 0.8  # the piano corpora's mode-valence is not given up
    # the other features' estimates do not move
    others = [i for i, n in enumerate(FEATURE_ORDER) if n not in ("valence", "energy")]
    np.testing.assert_array_equal(
        feature_matrix(test.descriptors, refitted)[:, others],
        feature_matrix(test.descriptors, shipped)[:, others],
    )
    # what is written loads back to the same estimates
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(refitted.to_dict()))
    again = Calibration.from_dict(json.loads(path.read_text()))
    np.testing.assert_array_equal(
        feature_matrix(test.descriptors, again), feature_matrix(test.descriptors, refitted)
    )
    assert again.info["refit"]["features"] == sorted(refitted.composites or {})


def test_a_refit_that_does_not_beat_the_current_weights_is_not_installed() -> None:
    shipped = _a_priori()

    def current_valence(split: Labelled) -> Labelled:
        # labels that rank exactly as the installed estimate: nothing to gain on val
        split.spotify[:, VALENCE] = np.where(
            split.corpus == "rpbot", feature_matrix(split.descriptors, shipped)[:, VALENCE], np.nan
        )
        split.emotion[:] = np.nan
        split.spotify[:, ENERGY] = np.where(
            split.corpus == "rpbot", feature_matrix(split.descriptors, shipped)[:, ENERGY], np.nan
        )
        return split

    train, val = current_valence(_split(0)), current_valence(_split(1))
    result = agreement(val, "valence", feature_matrix(val.descriptors, shipped)[:, VALENCE])
    assert result["spotify"]["rho_segment"] > 0.999
    refitted, report = refit(shipped, train, val)
    assert not report["features"]["valence"]["accepted"]
    assert not report["features"]["energy"]["accepted"]
    assert refitted is shipped
