"""Spotify + Million Song Dataset + Lakh matching, on fixtures built here (h5py files, a CSV, MIDI)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pretty_midi
import pytest

from training.data.match_spotify import (
    FEATURE_NAMES,
    MatchInputError,
    compare_with_seed,
    main,
    normalise_artist,
    normalise_title,
    read_msd_h5,
    read_msd_table,
    read_table,
    run_match,
    scan_lmd_matched,
)

SPOTIFY_HEADER = [
    "",
    "track_id",
    "artists",
    "album_name",
    "track_name",
    "popularity",
    "duration_ms",
    "explicit",
    *FEATURE_NAMES,
    "track_genre",
]


def _features(energy: float, tempo: float) -> dict[str, str]:
    values = dict.fromkeys(FEATURE_NAMES, "0.5")
    values.update(
        energy=str(energy), tempo=str(tempo), key="4", mode="1", time_signature="4", loudness="-6.5"
    )
    return values


def _spotify_row(index: int, sid: str, artists: str, title: str, pop: int, energy: float, tempo: float):
    row = {"": str(index), "track_id": sid, "artists": artists, "album_name": "A", "track_name": title}
    row.update(popularity=str(pop), duration_ms="1000", explicit="False", track_genre="pop")
    row.update(_features(energy, tempo))
    return row


def _write_msd_h5(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """MSD layout: ``metadata/songs`` (artist_name, title, song_id), ``analysis/songs`` (track_id)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_dtype = np.dtype([("artist_name", "S64"), ("song_id", "S18"), ("title", "S64")])
    analysis_dtype = np.dtype([("tempo", "<f8"), ("track_id", "S18")])
    meta = np.array([(a.encode(), b"SOXXXXXXXXXXXXXXXX", t.encode()) for _, a, t in rows], dtype=meta_dtype)
    analysis = np.array([(120.0, tid.encode()) for tid, _, _ in rows], dtype=analysis_dtype)
    with h5py.File(path, "w") as h5:
        h5.create_group("metadata").create_dataset("songs", data=meta)
        h5.create_group("analysis").create_dataset("songs", data=analysis)
        h5.create_group("musicbrainz").create_dataset(
            "songs", data=np.zeros(len(rows), dtype=[("year", "<i4")])
        )


def _write_midi(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes.append(pretty_midi.Note(velocity=80, pitch=60, start=0.0, end=0.5))
    pm.instruments.append(inst)
    pm.write(str(path))


def _lmd_path(root: Path, track_id: str, md5: str) -> Path:
    return root / track_id[2] / track_id[3] / track_id[4] / track_id / f"{md5}.mid"


TRACKS = {
    # track id: (artist, title) as MSD spells them
    "TRAAAAA128F0000001": ("The Beatles", "Yesterday"),
    "TRAAAAB128F0000002": ("Beyoncé & Jay-Z", "Crazy In Love"),
    "TRAAAAC128F0000003": ("Nobody Known", "Lost Song"),
    "TRAAAAD128F0000004": ("Beatles", "Yesterday (Remastered 2009)"),  # same key as track 1
    "TRBBBBB128F0000005": ("Not In MSD", "Ghost"),
}


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    spotify = tmp_path / "spotify.csv"
    rows = [
        _spotify_row(0, "sp1", "The Beatles", "Yesterday - Remastered 2009", 80, 0.2, 97.0),
        # the Kaggle table repeats a track once per genre: a duplicate, merged
        _spotify_row(1, "sp1", "The Beatles", "Yesterday - Remastered 2009", 80, 0.2, 97.0),
        # a less popular live version with different features: a conflict, the popular one wins
        _spotify_row(2, "sp2", "The Beatles", "Yesterday (Live)", 10, 0.9, 140.0),
        _spotify_row(3, "sp3", "Beyonce;JAY-Z", "Crazy in Love (feat. Jay-Z)", 70, 0.8, 99.0),
        _spotify_row(4, "sp4", "Someone", "Unrelated", 50, 0.5, 120.0),
    ]
    bad = _spotify_row(5, "sp5", "Broken", "Row", 5, 0.5, 120.0)
    bad["energy"] = "not a number"
    with spotify.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SPOTIFY_HEADER)
        writer.writeheader()
        writer.writerows([*rows, bad])

    msd = tmp_path / "lmd_matched_h5"
    for tid, (artist, title) in TRACKS.items():
        if tid.startswith("TRBBBBB"):
            continue
        _write_msd_h5(msd / tid[2] / tid[3] / tid[4] / f"{tid}.h5", [(tid, artist, title)])
    (msd / "broken.h5").write_bytes(b"not hdf5")

    lmd = tmp_path / "lmd_matched"
    for tid in TRACKS:
        _write_midi(_lmd_path(lmd, tid, "a" * 32))
    _write_midi(_lmd_path(lmd, "TRAAAAA128F0000001", "b" * 32))  # two MIDI files for one track
    return {"spotify": spotify, "msd": msd, "lmd": lmd, "tmp": tmp_path}


def test_normalisation_folds_versions_accents_and_articles():
    assert (
        normalise_title("Yesterday - Remastered 2009") == normalise_title("Yesterday (Live)") == "yesterday"
    )
    assert (
        normalise_title("Crazy in Love (feat. Jay-Z)") == normalise_title("Crazy In Love") == "crazy in love"
    )
    assert normalise_title("Don't Stop Me Now") == "dont stop me now"
    assert normalise_title("Dancing with Myself") == "dancing with myself"
    assert normalise_artist("The Beatles") == normalise_artist("beatles")
    assert normalise_artist("Beyoncé & Jay-Z") == "beyonce and jay z"


def test_msd_reader_takes_track_id_from_analysis(sources):
    tid = "TRAAAAB128F0000002"
    (track,) = read_msd_h5(sources["msd"] / "A" / "A" / "A" / f"{tid}.h5")
    assert (track.track_id, track.artist, track.title) == (tid, "Beyoncé & Jay-Z", "Crazy In Love")
    with pytest.raises(MatchInputError):
        read_msd_h5(sources["msd"] / "broken.h5")


def test_summary_file_with_many_rows(tmp_path):
    summary = tmp_path / "msd_summary_file.h5"
    _write_msd_h5(summary, [(tid, a, t) for tid, (a, t) in TRACKS.items()])
    assert [t.track_id for t in read_msd_h5(summary)] == list(TRACKS)


def test_lmd_scan_groups_midis_by_track(sources):
    midis = scan_lmd_matched(sources["lmd"])
    assert set(midis) == set(TRACKS)
    assert len(midis["TRAAAAA128F0000001"]) == 2


def test_match_counts_every_ambiguity(sources):
    rows, report = run_match(sources["spotify"], sources["msd"], sources["lmd"])
    by_track = {}
    for row in rows:
        by_track.setdefault(row.msd_track_id, []).append(row)
    # the two Beatles tracks (one with two MIDIs) and Beyoncé match; the rest do not
    assert sorted(by_track) == ["TRAAAAA128F0000001", "TRAAAAB128F0000002", "TRAAAAD128F0000004"]
    assert len(by_track["TRAAAAA128F0000001"]) == 2
    yesterday = dict(zip(FEATURE_NAMES, by_track["TRAAAAA128F0000001"][0].features, strict=True))
    assert yesterday["energy"] == pytest.approx(0.2) and yesterday["tempo"] == pytest.approx(97.0)
    assert by_track["TRAAAAB128F0000002"][0].spotify_id == "sp3"
    assert report.spotify_rows == 5 and report.spotify_rows_skipped == 1
    assert report.spotify_duplicate_rows == 1
    assert report.spotify_conflicting_keys == 1
    assert report.msd_keys_with_several_tracks == 1
    assert report.msd_files_unreadable == 1
    assert report.midi_tracks == 5 and report.midi_files == 6
    assert report.midi_tracks_without_msd == 1
    assert report.unmatched_tracks == 1
    assert report.matched_tracks == 3 and report.matched_midi_files == 4
    assert report.tracks_with_several_midis == 1
    assert report.matched_by_one_of_several_artists == 1  # Beyoncé & Jay-Z -> Beyonce


def test_cli_writes_table_and_report(sources):
    out = sources["tmp"] / "out" / "matched.csv"
    code = main(
        [
            "--spotify",
            str(sources["spotify"]),
            "--msd",
            str(sources["msd"]),
            "--lmd",
            str(sources["lmd"]),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rows = read_table(out)
    assert len(rows) == 4 and all(Path(r.midi_path).is_file() for r in rows)
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["matched_midi_files"] == 4


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("artists,track_name,energy\nA,B,0.5\n")
    code = main(["--spotify", str(bad_csv), "--msd", str(tmp_path), "--lmd", str(tmp_path)])
    assert code == 2
    assert "missing" in capsys.readouterr().err
    code = main(["--spotify", str(tmp_path / "nope.csv"), "--msd", str(tmp_path), "--lmd", str(tmp_path)])
    assert code == 2


def test_msd_text_tables(tmp_path):
    sep = tmp_path / "unique_tracks.txt"
    sep.write_text("TRAAAAA128F0000001<SEP>SOAAA<SEP>The Beatles<SEP>Yesterday\n")
    assert [(t.track_id, t.artist, t.title) for t in read_msd_table(sep)] == [
        ("TRAAAAA128F0000001", "The Beatles", "Yesterday")
    ]
    table = tmp_path / "msd.csv"
    table.write_text("track_id,artist,title\nTRAAAAA128F0000001,The Beatles,Yesterday\n")
    assert read_msd_table(table)[0].title == "Yesterday"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\n1,2\n")
    with pytest.raises(MatchInputError):
        read_msd_table(bad)


def test_rematching_the_original_reports_table_agrees_with_it(datasets_dir):
    """The original report's matched table, matched again from its Spotify columns against MSD metadata
    (artist/title of the Lakh-matched MSD tracks in the midi-emotion table): we find the same tracks."""
    spotify = datasets_dir / "spotify"
    result = compare_with_seed(spotify / "seed_matched_tracks.csv", spotify / "lakh_msd_spotify_features.csv")
    assert result["seed_msd_tracks_in_metadata"] > 500
    assert result["recall"] >= 0.97
    assert result["agreement"] >= 0.97
