"""Matching rpbot's artist/title index to the Lakh/MSD Spotify table, on a small made-up table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from training.data.label_rpbot import IndexRow, feature_tuple, match_index, read_labels
from training.data.spotify_agreement import rankdata, spearman

TABLE = """track_id,song_id,artist,title,spotify_ids,tempo,valence,energy
TR01,S1,The Beatles,Yesterday - Remastered 2009,,97.0,0.31,0.18
TR02,S2,Beyonce,Crazy In Love,,99.0,0.70,0.80
TR03,S3,Queens Of The Stone Age,No One Knows,,170.0,0.55,0.90
TR04,S4,Artist X,Song Onea,,100.0,0.10,0.10
TR05,S5,Artist X,Song Oneb,,120.0,0.90,0.90
TR06,S6,Twins,Same Song,,110.0,0.40,0.40
TR07,S7,Twins,Same Song,,130.0,0.60,0.60
TR08,S8,Partial,Half Known,,,0.25,0.75
TR09,S9,Empty,Nothing Known,,,,
"""


def _row(file: str, artist: str, title: str) -> IndexRow:
    return IndexRow(file, "rock", artist, title, "0" * 32)


@pytest.fixture()
def labels(tmp_path: Path):
    path = tmp_path / "table.csv"
    path.write_text(TABLE)
    return read_labels(path)


def test_exact_fuzzy_ambiguous_and_unmatched(labels):
    table, skipped = labels
    assert skipped == 1 and len(table) == 8  # the row without any feature is skipped
    rows = [
        _row("a.mid", "Beatles", "Yesterday"),  # exact after normalisation ("the", version suffix)
        _row("a2.mid", "The Beatles", "Yesterday (Live)"),  # another version: same song
        _row("b.mid", "Beyoncé & Jay-Z", "Crazy in Love"),  # exact on one credited artist
        _row("c.mid", "Queens of Stone Age", "No One Knows (Acoustic)"),  # fuzzy artist
        _row("d.mid", "Artist X", "Song One"),  # two equally close titles, different features
        _row("e.mid", "Nobody", "Nothing"),
        _row("f.mid", "Someone", " "),
        _row("g.mid", "Partial", "Half Known"),
    ]
    matched, report = match_index(rows, table, table_rows_skipped=skipped)
    assert {f: how for f, (_, how) in matched.items()} == {
        "a.mid": "exact",
        "a2.mid": "exact",
        "b.mid": "exact",
        "c.mid": "fuzzy",
        "g.mid": "exact",
    }
    assert matched["a.mid"][0].track_id == matched["a2.mid"][0].track_id == "TR01"
    assert matched["c.mid"][0].tempo == 170.0
    assert (report.exact, report.fuzzy, report.ambiguous, report.unmatched, report.no_title) == (
        4,
        1,
        1,
        1,
        1,
    )
    assert report.songs_matched == 4 and report.table_conflicting_keys == 1
    exact_only, strict = match_index(rows, table, fuzzy=False)
    assert "c.mid" not in exact_only and strict.fuzzy == 0 and strict.ambiguous == 0 and strict.unmatched == 3


def test_feature_tuple_keeps_missing_values_missing(labels):
    table, _ = labels
    partial = next(label for label in table if label.artist == "Partial")
    values = feature_tuple(partial, ("energy", "valence", "loudness", "tempo"))
    assert values[:2] == (0.75, 0.25) and math.isnan(values[2]) and math.isnan(values[3])


def test_spearman_and_ranks():
    np.testing.assert_allclose(rankdata(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])
    x = np.arange(20.0)
    rho, low, high = spearman(x, x**3)
    assert rho == pytest.approx(1.0) and low > 0.99
    rho, low, high = spearman(x, -x)
    assert rho == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    rho, low, high = spearman(rng.normal(size=200), rng.normal(size=200))
    assert low < 0 < high
    assert math.isnan(spearman([1.0, 2.0], [1.0, 2.0])[0])
