"""One reader per training corpus: which files make up a corpus and which song each file belongs to.

A reader lists :class:`Piece` objects; it does not parse MIDI. The song id groups the versions of one
song so that the split never separates them (Beatles ``<song>.v<N>.mid``, EMOPIA ``Q<n>_<id>_<k>``,
VGMIDI ``<piece>_<k>``). See ``shared/datasets/README.md`` for the corpora and their licences.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi


class CorpusError(ValueError):
    """A corpus folder or one of its annotation files is missing or malformed."""


@dataclass(frozen=True, slots=True)
class Piece:
    """One MIDI file of a corpus.

    ``emotion`` is the corpus' own (valence, arousal) label in -1..1 where it has one;
    ``spotify`` the Spotify features (in ``FEATURE_ORDER``) where the song was matched;
    ``beats_file`` the beat annotation that defines the bars (POP909). A piece inside a zip archive
    has the archive as ``path`` and its entry name as ``member`` (read with :func:`read_piece_bytes`);
    ``note_hash`` is the archive index's hash of the note content (:func:`note_hash`), where known.
    A ``spotify`` value may be NaN where only some features are Spotify's (the rest are estimated).
    """

    path: Path
    corpus: str
    song_id: str
    emotion: tuple[float, float] | None = None
    spotify: tuple[float, ...] | None = None
    beats_file: Path | None = None
    member: str | None = None
    note_hash: str | None = None

    @property
    def name(self) -> str:
        """The file's identity as stored in the shards: its path, or ``archive.zip::member``."""
        return f"{self.path}::{self.member}" if self.member is not None else str(self.path)


@dataclass(frozen=True, slots=True)
class Corpus:
    """A named corpus: its folder under the datasets root, licence and reader."""

    name: str
    folder: str
    licence: str
    scan: Callable[[Path], list[Piece]]


_ARCHIVES: dict[tuple[int, str], zipfile.ZipFile] = {}


def read_piece_bytes(piece: Piece) -> bytes:
    """The MIDI bytes of a piece: the file, or its entry of a zip archive read in place (the archive
    is opened once per process: a forked worker must not share the parent's file offset)."""
    if piece.member is None:
        return Path(piece.path).read_bytes()
    stat = os.stat(piece.path)
    key = (os.getpid(), f"{piece.path}:{stat.st_size}:{stat.st_mtime_ns}")
    archive = _ARCHIVES.get(key)
    if archive is None:
        archive = _ARCHIVES[key] = zipfile.ZipFile(piece.path)
    return archive.read(piece.member)


def note_hash(data: bytes) -> str:
    """md5 of the sorted ``(tick, channel, pitch)`` note-ons (velocity > 0; ticks absolute per track), as
    the ``note_hash`` of the shared ``multi/*.index.csv``: equal for files that differ only in
    tempo, names, programs or controllers. Raises ``ValueError`` for data that is not MIDI."""
    from e2m_live.description import midi_reader

    try:
        tracks = midi_reader._read_tracks(data)[1]
    except Exception:  # an unusual file: mido's full reader
        import io

        import mido

        try:
            tracks = mido.MidiFile(file=io.BytesIO(data)).tracks
        except Exception as exc:
            raise ValueError(f"not a MIDI file: {type(exc).__name__}") from exc
    notes = []
    for track in tracks:
        tick = 0
        for event in track:
            tick += event.time
            if event.type == "note_on" and event.velocity > 0:
                notes.append((tick, event.channel, event.note))
    notes.sort()
    return hashlib.md5(repr(notes).encode()).hexdigest()


# --- readers ------------------------------------------------------------------------------------

_BEATLES_VERSION = re.compile(r"^(?P<song>.+)\.v(?P<version>\d+)$")
_TRACK_NUMBER = re.compile(r"^\d+_-_")


def scan_beatles(folder: Path) -> list[Piece]:
    """``<album>/<NN>_-_<song>.v<N>.mid``; the song id drops album and track number so that a song
    on two albums is still one song."""
    pieces = []
    for path in sorted(folder.glob("*/*.mid")):
        match = _BEATLES_VERSION.match(path.stem)
        song = match["song"] if match else path.stem
        song_id = _TRACK_NUMBER.sub("", song).casefold()
        pieces.append(Piece(path, "lakh-clean-beatles", song_id))
    return pieces


def read_pop909_downbeats(beats_file: Path) -> list[float]:
    """Downbeat times in seconds from POP909's ``beat_midi.txt`` (time, beat flag, downbeat flag)."""
    downbeats = []
    try:
        lines = beats_file.read_text().splitlines()
    except OSError as exc:
        raise CorpusError(f"{beats_file}: cannot read beat annotation ({exc})") from exc
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            time, downbeat = float(fields[0]), float(fields[2])
        except (IndexError, ValueError) as exc:
            raise CorpusError(f"{beats_file}:{number}: expected 'time beat downbeat', got {line!r}") from exc
        if downbeat == 1.0:
            downbeats.append(time)
    if len(downbeats) < 2 or np.any(np.diff(downbeats) <= 0):
        raise CorpusError(f"{beats_file}: needs at least two increasing downbeats")
    return downbeats


def annotated_time_signatures(midi: object, downbeats: Sequence[float]) -> list[pretty_midi.TimeSignature]:
    """Time signatures that fit annotated bars: each bar's length in quarters under the file's tempo map,
    rounded to an eighth, as ``q/4`` (or ``2q/8`` for half quarters).

    POP909's MIDI time signatures are unreliable (many files say 1/4 or 2/4 for four-beat bars), and
    FIGARO places notes on ``positions per bar`` taken from the time signature, so notes after the
    signature's length would all collapse onto its last position.
    """
    resolution = midi.resolution  # type: ignore[attr-defined]
    ticks = [midi.time_to_tick(t) for t in downbeats]  # type: ignore[attr-defined]
    changes: list[pretty_midi.TimeSignature] = []
    previous: tuple[int, int] | None = None
    for time, lo, hi in zip(downbeats[:-1], ticks[:-1], ticks[1:], strict=True):
        eighths = max(1, round(2 * (hi - lo) / resolution))
        signature = (eighths // 2, 4) if eighths % 2 == 0 else (eighths, 8)
        signature = (min(signature[0], 3 * signature[1]), signature[1])  # FIGARO's largest bar
        if signature != previous:
            changes.append(pretty_midi.TimeSignature(signature[0], signature[1], float(time)))
            previous = signature
    if changes:
        changes[0] = pretty_midi.TimeSignature(changes[0].numerator, changes[0].denominator, 0.0)
    return changes


def scan_pop909(folder: Path) -> list[Piece]:
    """``<id>/<id>.mid`` with ``beat_midi.txt`` beside it; bars come from the beat annotation."""
    pieces = []
    for song_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        midi = song_dir / f"{song_dir.name}.mid"
        if midi.is_file():
            pieces.append(Piece(midi, "pop909", song_dir.name, beats_file=song_dir / "beat_midi.txt"))
    return pieces


_EMOPIA = re.compile(r"^Q(?P<quadrant>[1-4])_(?P<id>.+)_(?P<clip>\d+)$")
#: Russell quadrant -> (valence, arousal).
QUADRANT_VA: dict[int, tuple[float, float]] = {1: (1.0, 1.0), 2: (-1.0, 1.0), 3: (-1.0, -1.0), 4: (1.0, -1.0)}


def scan_emopia(folder: Path) -> list[Piece]:
    """``Q<n>_<id>_<k>.mid``: clips of one song share ``<id>`` (which may itself hold ``_``)."""
    pieces = []
    for path in sorted(folder.glob("*.mid")):
        match = _EMOPIA.match(path.stem)
        if match is None:
            pieces.append(Piece(path, "emopia", path.stem))
            continue
        pieces.append(Piece(path, "emopia", match["id"], emotion=QUADRANT_VA[int(match["quadrant"])]))
    return pieces


def scan_vgmidi(folder: Path) -> list[Piece]:
    """The labelled phrases listed in ``vgmidi_labelled.csv``; a piece's phrases share its song id.

    Labels are valence and arousal in -1..1 per phrase.
    """
    table = folder / "vgmidi_labelled.csv"
    if not table.is_file():
        raise CorpusError(f"{table} not found")
    pieces = []
    with table.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                path = folder / row["midi"]
                emotion = (float(row["valence"]), float(row["arousal"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise CorpusError(f"{table}: bad row {row} ({exc})") from exc
            song_id = "_".join(
                (row.get("series", ""), row.get("console", ""), row.get("game", ""), row.get("piece", ""))
            )
            pieces.append(Piece(path, "vgmidi", song_id, emotion=emotion))
    return sorted(pieces, key=lambda p: str(p.path))


def scan_nottingham(folder: Path) -> list[Piece]:
    """``<tune>.mid``: one song per file."""
    return [Piece(path, "nottingham", path.stem) for path in sorted(folder.glob("*.mid"))]


CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in (
        Corpus("lakh-clean-beatles", "lakh-clean-beatles", "CC-BY-4.0 (Lakh MIDI)", scan_beatles),
        Corpus("pop909", "pop909", "MIT", scan_pop909),
        Corpus("emopia", "emopia", "CC-BY-NC-SA-4.0 (research use)", scan_emopia),
        Corpus("vgmidi", "vgmidi", "no licence file; research use", scan_vgmidi),
        Corpus("nottingham", "nottingham", "GPL-3.0", scan_nottingham),
    )
}

#: Corpus name of MIDI files matched to Spotify features by ``training.data.match_spotify``.
SPOTIFY_MATCHED = "lakh-spotify"
SPOTIFY_MATCHED_LICENCE = "CC-BY-4.0 (Lakh MIDI); Spotify features under Spotify's terms"


def scan_spotify_table(table: Path) -> list[Piece]:
    """Pieces of a table written by ``training.data.match_spotify``: MSD track id as song id, Spotify
    features."""
    from training.data.match_spotify import read_table

    return [
        Piece(Path(row.midi_path), SPOTIFY_MATCHED, row.msd_track_id, spotify=row.features)
        for row in read_table(table)
    ]


def scan_corpora(
    datasets_root: Path, names: list[str] | None = None, spotify_table: Path | None = None
) -> dict[str, list[Piece]]:
    """Pieces of every named corpus (default: those whose folder exists) and of a Spotify table."""
    datasets_root = Path(datasets_root)
    chosen = (
        names if names is not None else [n for n, c in CORPORA.items() if (datasets_root / c.folder).is_dir()]
    )
    found: dict[str, list[Piece]] = {}
    for name in chosen:
        if name not in CORPORA:
            raise CorpusError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
        folder = datasets_root / CORPORA[name].folder
        if not folder.is_dir():
            raise CorpusError(f"corpus folder not found: {folder}")
        found[name] = CORPORA[name].scan(folder)
    if spotify_table is not None:
        found[SPOTIFY_MATCHED] = scan_spotify_table(spotify_table)
    return found


def licence_of(corpus: str) -> str:
    if corpus == SPOTIFY_MATCHED:
        return SPOTIFY_MATCHED_LICENCE
    return CORPORA[corpus].licence
