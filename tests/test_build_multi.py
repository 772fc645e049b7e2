"""The dataset build on zip corpora made here: read in place, dedup, split by song, cache, shards + merge."""

from __future__ import annotations

import csv
import json
import os
import zipfile
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from training.data.build import BuildConfig, build, main
from training.data.corpora import note_hash
from training.data.dataset import SPLITS, load_split

pytest.importorskip("e2m_live.description.extract")

CORPORA = ("nottingham", "rpbot", "pvgm")


def _song(seed: int, *, tempo: float = 120.0, drums: bool = True, bars: int = 14) -> pretty_midi.PrettyMIDI:
    """A small band piece: chords, a bass line and drums, 4/4 (no time signature when ``seed`` is odd: the
    build assumes 4/4 then)."""
    rng = np.random.default_rng(seed)
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    if seed % 2 == 0:
        midi.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    beat = 60.0 / tempo
    piano, bass = pretty_midi.Instrument(program=0), pretty_midi.Instrument(program=33)
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    for bar in range(bars):
        root = 48 + int(rng.integers(0, 12))
        t = bar * 4 * beat
        for pitch in (root + 12, root + 16, root + 19):
            piano.notes.append(pretty_midi.Note(80, pitch, t, t + 4 * beat))
        for b in range(4):
            bass.notes.append(pretty_midi.Note(90, root - 12, t + b * beat, t + (b + 0.9) * beat))
            if drums:
                kit.notes.append(
                    pretty_midi.Note(100, 36 if b % 2 == 0 else 38, t + b * beat, t + b * beat + 0.1)
                )
    midi.instruments += [piano, bass] + ([kit] if drums else [])
    return midi


def _bytes(midi: pretty_midi.PrettyMIDI, tmp: Path) -> bytes:
    path = tmp / "scratch.mid"
    midi.write(str(path))
    if not midi.time_signature_changes:  # pretty_midi writes a 4/4 event anyway: remove it
        file = mido.MidiFile(str(path))
        for track in file.tracks:
            for message in [m for m in track if m.type == "time_signature"]:
                index = track.index(message)
                if index + 1 < len(track):
                    track[index + 1].time += message.time
                track.remove(message)
        file.save(str(path))
    return path.read_bytes()


def _write_zip(folder: Path, name: str, files: dict[str, bytes], rows: list[dict[str, str]]) -> None:
    with zipfile.ZipFile(folder / f"{name}.zip", "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    header = [*rows[0], "note_hash"]
    with (folder / f"{name}.index.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "note_hash": note_hash(files[row["file"]])})


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nottingham/ (2 tunes), multi/rpbot.zip (8 songs, one in two versions, one copy of a Nottingham
    tune under another tempo), multi/pvgm.zip (3 songs, one a copy of an rpbot file) and a Spotify table."""
    root = tmp_path_factory.mktemp("datasets")
    tmp = tmp_path_factory.mktemp("scratch")
    (root / "nottingham").mkdir()
    for i in (100, 102):
        (root / "nottingham" / f"tune{i}.mid").write_bytes(_bytes(_song(i, drums=False), tmp))
    multi = root / "multi"
    multi.mkdir()
    files, rows = {}, []
    for i in range(8):
        member = f"rock/rock__{i:04d}.mid"
        files[member] = _bytes(_song(i), tmp)
        rows.append(
            {"file": member, "genre": "rock", "artist": f"Band {i}", "title": f"Song {i}", "source": ""}
        )
    # a second version of "Song 0" by "The Band 0" (the key drops "the"), with other notes
    files["rock/rock__v2.mid"] = _bytes(_song(50), tmp)
    rows.append(
        {
            "file": "rock/rock__v2.mid",
            "genre": "rock",
            "artist": "The Band 0",
            "title": "Song 0 (Live)",
            "source": "",
        }
    )
    # the notes of tune100 at another tempo: a duplicate of the Nottingham file
    files["pop/pop__dup.mid"] = _bytes(_song(100, tempo=90.0, drums=False), tmp)
    rows.append(
        {"file": "pop/pop__dup.mid", "genre": "pop", "artist": "Copycat", "title": "Tune", "source": ""}
    )
    _write_zip(multi, "rpbot", files, rows)
    pv_files = {f"{i:04d}_Level{i}.mid": _bytes(_song(200 + i), tmp) for i in range(3)}
    pv_files["0009_Copy.mid"] = files["rock/rock__0001.mid"]
    pv_rows = [{"file": m, "genre": "video game", "title": m[5:-4], "source": ""} for m in pv_files]
    _write_zip(multi, "pvgm", pv_files, pv_rows)
    (root / "spotify").mkdir()
    (root / "spotify" / "lakh_msd_spotify_features.csv").write_text(
        "track_id,song_id,artist,title,spotify_ids,tempo,valence,energy\n"
        "TRA0001,SO1,Band 0,Song 0,,101.0,0.123,0.456\n"
    )
    return root


def _config(root: Path) -> BuildConfig:
    return BuildConfig(
        datasets_root=str(root), corpora=CORPORA, stride=4, chunk_size=3, val_fraction=0.3, test_fraction=0.2
    )


@pytest.fixture(scope="module")
def built(root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("dataset")
    return out, build(_config(root), out, workers=2, progress=False)


def _all_segments(out: Path) -> dict[str, object]:
    return {split: load_split(out, split) for split in SPLITS}


def test_reads_the_zips_in_place_and_counts_per_corpus(built):
    out, manifest = built
    assert not list(out.rglob("*.mid")), "nothing is extracted to disk"
    files = {f for segs in _all_segments(out).values() for f in segs._file}
    assert any(f.endswith("rpbot.zip::rock/rock__0000.mid") for f in files)
    rpbot = manifest["corpora"]["rpbot"]
    assert rpbot["share_segments_with_drums"] == 1.0 and rpbot["instruments_per_segment"] == 3.0
    assert manifest["corpora"]["nottingham"]["share_segments_with_drums"] == 0.0
    used = sum(s.get("files_used", 0) for s in rpbot["splits"].values())
    assert used == 9 and rpbot["files_found"] == 10
    assert sum(s.get("files_assumed_4_4", 0) for s in rpbot["splits"].values()) == 4


def test_duplicates_are_dropped_across_corpora(built):
    out, manifest = built
    assert manifest["corpora"]["rpbot"]["skipped"] == {"duplicate note content (of nottingham)": 1}
    assert manifest["corpora"]["pvgm"]["skipped"] == {"duplicate note content (of rpbot)": 1}
    files = {f for segs in _all_segments(out).values() for f in segs._file}
    assert not any(f.endswith("pop__dup.mid") or f.endswith("0009_Copy.mid") for f in files)
    assert any(f.endswith("tune100.mid") for f in files)


def test_a_song_never_straddles_splits(built):
    out, _ = built
    split_of: dict[tuple[str, str], str] = {}
    for split, segments in _all_segments(out).items():
        for corpus, song in zip(segments.corpora, segments.song_ids, strict=True):
            assert split_of.setdefault((corpus, song), split) == split
    versions = [
        split
        for split, segs in _all_segments(out).items()
        for f, s in zip(segs._file, segs._song, strict=True)
        if "rock__0000" in f or "rock__v2" in f
    ]
    assert len(versions) == 2 and len(set(versions)) == 1
    assert {split for (_, _), split in split_of.items()} >= {"train", "val"}


def test_spotify_labels_replace_three_estimates(built):
    out, manifest = built
    segments = [s for segs in _all_segments(out).values() for s in segs if s.corpus == "rpbot"]
    matched = [s for s in segments if s.song_id == "band 0|song 0"]
    assert len({s.file for s in matched}) == 2  # both versions carry the song's labels
    order = manifest["feature_order"]
    for s in matched:
        assert s.features_source == "spotify_partial"
        assert s.features[order.index("valence")] == pytest.approx(0.123)
        assert s.features[order.index("energy")] == pytest.approx(0.456)
        assert s.features[order.index("tempo")] == pytest.approx(101.0)
        loud = order.index("loudness")
        assert s.features[loud] == s.estimated_features[loud]
    assert all(s.features_source == "estimated" for s in segments if s.song_id != "band 0|song 0")
    assert manifest["corpora"]["rpbot"]["files_spotify"] == 2


def test_second_run_uses_the_cache_and_redoes_only_what_changed(root, tmp_path):
    out = tmp_path / "d"
    first = build(_config(root), out, workers=1, progress=False)
    assert first["files_extracted"] == 15 and first["files_from_cache"] == 0  # the pvgm copy is never read
    shards = sorted(out.glob("*/*.npz"))
    stamps = {p: p.stat().st_mtime_ns for p in shards}
    again = build(_config(root), out, workers=1, progress=False)
    assert again["files_extracted"] == 0 and again["files_from_cache"] == 15
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert again["totals"] == first["totals"]
    tune = root / "nottingham" / "tune102.mid"
    os.utime(tune, ns=(tune.stat().st_atime_ns, tune.stat().st_mtime_ns + 1_000_000_000))
    third = build(_config(root), out, workers=1, progress=False)
    assert third["files_extracted"] == 1
    rewritten = [p for p, t in stamps.items() if p.stat().st_mtime_ns != t]
    assert len(rewritten) == 1  # only the shard holding that file
    assert third["totals"] == first["totals"]


def test_shards_then_merge_equal_one_build(root, built, tmp_path, capsys):
    single, manifest = built
    out = tmp_path / "sharded"
    args = [
        "--datasets",
        str(root),
        "--corpora",
        *CORPORA,
        "--stride",
        "4",
        "--chunk-size",
        "3",
        "--val",
        "0.3",
    ]
    args += ["--test", "0.2", "--out", str(out), "--workers", "1", "--no-progress"]
    done = []
    for i in range(3):
        assert main([*args, "--shard", f"{i}/3"]) == 0
        done.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert sum(d["files"] for d in done) == 16 and not (out / "manifest.json").exists()
    assert main(["merge", *args]) == 0
    merged = json.loads((out / "manifest.json").read_text())
    assert merged["files_extracted"] == 0
    assert merged["totals"] == manifest["totals"] and merged["corpora"] == manifest["corpora"]
    names = sorted(p.relative_to(single) for p in single.glob("*/*.npz"))
    assert names == sorted(p.relative_to(out) for p in out.glob("*/*.npz"))
    for name in names:
        with np.load(single / name) as a, np.load(out / name) as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")
    assert main([*args, "--shard", "3/3"]) == 2
