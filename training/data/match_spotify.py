"""Match Spotify audio features to Lakh MIDI files through the Million Song Dataset.

The original report joined three sources:

* a Spotify tracks table (Kaggle "Spotify Tracks Dataset": ``artists`` separated by ``;``,
  ``track_name``, the audio features),
* Million Song Dataset metadata (one HDF5 file per track, as in ``lmd_matched_h5``, or the
  aggregate ``msd_summary_file.h5``): ``metadata/songs`` holds ``artist_name``, ``title`` and
  ``song_id``; ``analysis/songs`` holds ``track_id``,
* the Lakh ``lmd_matched`` tree: ``lmd_matched/A/B/C/TRABC.../<md5>.mid``.

Here the join is on a normalised ``(artist, title)`` key, and every way the key can be ambiguous is
counted in a :class:`MatchReport` instead of being resolved silently:

* several Spotify rows with the same key and the same features (the Kaggle table repeats a track
  once per genre) are *duplicates*, merged;
* several Spotify rows with the same key and different features (album and single versions,
  remasters) are *conflicts*, resolved by the highest popularity, then the first row;
* several MSD tracks with the same key share the Spotify features and are counted;
* a track with several MIDI files gives one row per file (Lakh matched them all to the track).

Run: ``python -m training.data.match_spotify --spotify tracks.csv --msd lmd_matched_h5 --lmd lmd_matched
--out data/spotify_matched.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from e2m_live.features import FEATURE_ORDER

log = logging.getLogger(__name__)

#: The ten controls, in the order of ``EmotionFeatures`` (Spotify's names and units).
FEATURE_NAMES: tuple[str, ...] = FEATURE_ORDER

_VERSION_WORDS = (
    "remaster",
    "live",
    "version",
    "mix",
    "edit",
    "mono",
    "stereo",
    "single",
    "radio",
    "demo",
    "take",
    "acoustic",
    "instrumental",
    "recorded",
    "bonus",
    "from",
)
_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]|\{[^}]*\}")
_FEAT = re.compile(r"\s(feat\.?|ft\.?|featuring)\s.*$")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


class MatchInputError(ValueError):
    """An input table or file is missing or lacks the expected columns or fields."""


# --- normalisation ------------------------------------------------------------------------------


def _fold(text: str) -> str:
    """Case-fold and strip accents: "Beyoncé" -> "beyonce"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _squash(text: str) -> str:
    text = text.replace("&", " and ").replace("'", "").replace("\u2019", "")
    return _NON_ALNUM.sub(" ", text).strip()


def normalise_title(title: str) -> str:
    """Title key: folded, without bracketed notes, version suffixes or featured artists.

    "Yesterday - Remastered 2009" and "Yesterday (Live)" both become "yesterday".
    """
    text = _fold(title)
    text = _BRACKETS.sub(" ", text)
    if " - " in text:
        head, _, tail = text.partition(" - ")
        if any(word in tail for word in _VERSION_WORDS) or re.search(r"\d{4}", tail):
            text = head
    text = _FEAT.sub("", text)
    squashed = _squash(text)
    return squashed or _squash(_fold(title))


def normalise_artist(artist: str) -> str:
    """Artist key: folded, "&" as "and", no leading "the", punctuation removed."""
    text = _squash(_fold(artist))
    return text.removeprefix("the ").strip()


def match_key(artist: str, title: str) -> tuple[str, str]:
    return normalise_artist(artist), normalise_title(title)


_ARTIST_SEPARATORS = re.compile(r"\s*(?:&|,|/|;|\bx\b|\band\b|\bfeat\.?|\bft\.?|\bfeaturing\b|\bwith\b)\s*")


def artist_keys(artist: str) -> list[str]:
    """Normalised artist, then each credited artist alone: "Beyoncé & Jay-Z" -> [.., "beyonce", "jay z"].

    MSD credits collaborations in one string while Spotify lists artists separately.
    """
    keys = [normalise_artist(artist)]
    for part in _ARTIST_SEPARATORS.split(_fold(artist)):
        key = normalise_artist(part)
        if key and key not in keys:
            keys.append(key)
    return keys


# --- Spotify -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpotifyTrack:
    """One row of the Spotify table."""

    spotify_id: str
    artists: tuple[str, ...]
    title: str
    features: tuple[float, ...]  # in FEATURE_NAMES order
    popularity: float

    def feature_dict(self) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, self.features, strict=True))


def _first_present(header: Sequence[str], *names: str) -> str | None:
    return next((n for n in names if n in header), None)


def read_spotify_csv(path: Path) -> tuple[list[SpotifyTrack], int]:
    """Read a Spotify tracks CSV; returns the usable tracks and the number of rows skipped.

    Accepts the Kaggle layout (``track_id``, ``artists`` separated by ``;``, ``track_name``) and
    ``artist``/``title`` columns. Rows whose features are missing or not numbers are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise MatchInputError(f"Spotify table not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        artist_col = _first_present(header, "artists", "artist", "artist_name")
        title_col = _first_present(header, "track_name", "title", "name")
        id_col = _first_present(header, "track_id", "spotify_id", "id")
        missing = [n for n in FEATURE_NAMES if n not in header]
        if artist_col is None or title_col is None or missing:
            if artist_col is None:
                missing.insert(0, "artist")
            if title_col is None:
                missing.insert(0, "title")
            raise MatchInputError(f"{path}: needs artist, title and feature columns; missing {missing}")
        tracks: list[SpotifyTrack] = []
        skipped = 0
        for index, row in enumerate(reader):
            try:
                features = tuple(float(row[name]) for name in FEATURE_NAMES)
            except (TypeError, ValueError):
                skipped += 1
                continue
            if not all(math.isfinite(v) for v in features) or not row[artist_col] or not row[title_col]:
                skipped += 1
                continue
            artists = tuple(a.strip() for a in row[artist_col].split(";") if a.strip())
            popularity = row.get("popularity") or ""
            try:
                pop = float(popularity)
            except ValueError:
                pop = -1.0
            tracks.append(
                SpotifyTrack(
                    spotify_id=(row.get(id_col) if id_col else None) or f"row{index}",
                    artists=artists,
                    title=row[title_col],
                    features=features,
                    popularity=pop,
                )
            )
    return tracks, skipped


# --- Million Song Dataset ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MsdTrack:
    """Identity of one MSD track."""

    track_id: str
    artist: str
    title: str


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def read_msd_h5(path: Path) -> list[MsdTrack]:
    """Tracks of one MSD HDF5 file: a per-track file (one row) or the summary file (many rows)."""
    import h5py  # optional dependency (extra "train"), imported where needed

    try:
        with h5py.File(path, "r") as h5:
            meta = h5["metadata"]["songs"]
            analysis = h5["analysis"]["songs"]
            artists = meta["artist_name"]
            titles = meta["title"]
            track_ids = analysis["track_id"]
    except (OSError, KeyError, ValueError) as exc:
        raise MatchInputError(f"{path}: not an MSD HDF5 file ({exc})") from exc
    if not len(artists) == len(titles) == len(track_ids):
        raise MatchInputError(f"{path}: metadata/songs and analysis/songs differ in length")
    return [
        MsdTrack(_text(t), _text(a), _text(n)) for t, a, n in zip(track_ids, artists, titles, strict=True)
    ]


def read_msd_table(path: Path) -> list[MsdTrack]:
    """MSD track identities from text: MSD's ``unique_tracks.txt`` (``track<SEP>song<SEP>artist<SEP>title``)
    or a CSV with ``track_id``, ``artist`` (or ``artist_name``) and ``title`` columns."""
    path = Path(path)
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        first = handle.readline()
        handle.seek(0)
        if "<SEP>" in first:
            tracks = []
            for number, line in enumerate(handle, 1):
                fields = line.rstrip("\r\n").split("<SEP>")
                if len(fields) != 4:
                    raise MatchInputError(f"{path}:{number}: expected track<SEP>song<SEP>artist<SEP>title")
                tracks.append(MsdTrack(fields[0], fields[2], fields[3]))
            return tracks
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        artist_col = _first_present(header, "artist_name", "artist")
        if "track_id" not in header or artist_col is None or "title" not in header:
            raise MatchInputError(f"{path}: needs track_id, artist (or artist_name) and title columns")
        return [MsdTrack(r["track_id"], r[artist_col] or "", r["title"] or "") for r in reader]


def scan_msd(source: Path) -> tuple[list[MsdTrack], Counter[str]]:
    """All tracks of an MSD summary file, a folder of per-track ``.h5`` files, or a metadata table
    (``.csv``/``.txt``, see :func:`read_msd_table`).

    Unreadable files are skipped; the second value counts the reasons.
    """
    source = Path(source)
    errors: Counter[str] = Counter()
    if source.is_file():
        if source.suffix.lower() in (".csv", ".txt"):
            return read_msd_table(source), errors
        return read_msd_h5(source), errors
    if not source.is_dir():
        raise MatchInputError(f"MSD metadata not found: {source}")
    tracks: list[MsdTrack] = []
    for h5_path in sorted(source.rglob("*.h5")):
        try:
            tracks.extend(read_msd_h5(h5_path))
        except MatchInputError as exc:
            log.warning("skipping %s", exc)
            errors["unreadable h5"] += 1
    return tracks, errors


# --- Lakh -------------------------------------------------------------------------------------


_TRACK_ID = re.compile(r"^TR[A-Z0-9]{16}$")


def scan_lmd_matched(root: Path) -> dict[str, list[Path]]:
    """MSD track id -> its MIDI files in an ``lmd_matched`` tree (``A/B/C/TRABC.../<md5>.mid``)."""
    root = Path(root)
    if not root.is_dir():
        raise MatchInputError(f"lmd_matched root not found: {root}")
    midis: dict[str, list[Path]] = defaultdict(list)
    for midi in sorted(root.glob("*/*/*/TR*/*.mid")):
        track_id = midi.parent.name
        if _TRACK_ID.match(track_id):
            midis[track_id].append(midi.resolve())
    return dict(midis)


# --- matching ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MatchRow:
    """One MIDI file with the Spotify features of its song."""

    msd_track_id: str
    midi_path: str
    spotify_id: str
    artist: str
    title: str
    features: tuple[float, ...]

    def as_csv_row(self) -> dict[str, str]:
        row = {
            "msd_track_id": self.msd_track_id,
            "midi_path": self.midi_path,
            "spotify_id": self.spotify_id,
            "artist": self.artist,
            "title": self.title,
        }
        row.update({name: repr(value) for name, value in zip(FEATURE_NAMES, self.features, strict=True)})
        return row


@dataclass(slots=True)
class MatchReport:
    """What happened to every input, so the match can be judged."""

    spotify_rows: int = 0
    spotify_rows_skipped: int = 0
    spotify_keys: int = 0
    spotify_duplicate_rows: int = 0  # same key, same features: merged
    spotify_conflicting_keys: int = 0  # same key, different features: most popular kept
    msd_tracks: int = 0
    msd_files_unreadable: int = 0
    midi_tracks: int = 0
    midi_files: int = 0
    midi_tracks_without_msd: int = 0
    msd_keys_with_several_tracks: int = 0
    matched_tracks: int = 0
    matched_midi_files: int = 0
    tracks_with_several_midis: int = 0
    matched_by_one_of_several_artists: int = 0
    unmatched_tracks: int = 0
    examples_conflicts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.matched_tracks} of {self.midi_tracks} MIDI tracks matched "
            f"({self.matched_midi_files} MIDI files); Spotify: {self.spotify_rows} rows, "
            f"{self.spotify_duplicate_rows} duplicates merged, "
            f"{self.spotify_conflicting_keys} conflicting keys; "
            f"MSD: {self.msd_keys_with_several_tracks} keys with several tracks, "
            f"{self.midi_tracks_without_msd} MIDI tracks without metadata"
        )


def _same_features(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6) for x, y in zip(a, b, strict=True))


def index_spotify(tracks: Iterable[SpotifyTrack], report: MatchReport) -> dict[tuple[str, str], SpotifyTrack]:
    """Key -> chosen Spotify track; duplicates and conflicts are counted in ``report``."""
    by_key: dict[tuple[str, str], list[SpotifyTrack]] = defaultdict(list)
    for track in tracks:
        keys = {match_key(artist, track.title) for artist in track.artists}
        for key in keys:
            by_key[key].append(track)
    chosen: dict[tuple[str, str], SpotifyTrack] = {}
    for key, candidates in by_key.items():
        distinct: list[SpotifyTrack] = []
        for cand in candidates:
            if any(_same_features(cand.features, d.features) for d in distinct):
                report.spotify_duplicate_rows += 1
            else:
                distinct.append(cand)
        if len(distinct) > 1:
            report.spotify_conflicting_keys += 1
            if len(report.examples_conflicts) < 20:
                report.examples_conflicts.append(f"{key[0]} - {key[1]}: {len(distinct)} versions")
        # Highest popularity wins; ``max`` keeps the first of equals, so the order of the table decides ties.
        chosen[key] = max(distinct, key=lambda t: t.popularity)
    report.spotify_keys = len(chosen)
    return chosen


def find_spotify(
    meta: MsdTrack, spotify_index: dict[tuple[str, str], SpotifyTrack]
) -> tuple[SpotifyTrack | None, bool]:
    """The Spotify track of an MSD track, and whether it matched on one of several credited artists."""
    title_key = normalise_title(meta.title)
    keys = [(artist, title_key) for artist in artist_keys(meta.artist)]
    found = next((i for i, key in enumerate(keys) if key in spotify_index), None)
    if found is None:
        return None, False
    return spotify_index[keys[found]], found > 0


def compare_with_seed(seed_csv: Path, msd_source: Path) -> dict[str, float | int]:
    """Check our matching against the original report's: its table (Kaggle Spotify columns plus
    ``msd_track_id``) is matched again from scratch against MSD metadata, and for every MSD track
    of the seed present in the metadata we check that we find a Spotify row with the seed's features."""
    spotify, _ = read_spotify_csv(seed_csv)
    with Path(seed_csv).open(newline="", encoding="utf-8") as handle:
        seed_rows = list(csv.DictReader(handle))
    if not seed_rows or "msd_track_id" not in seed_rows[0]:
        raise MatchInputError(f"{seed_csv}: needs an msd_track_id column")
    seed_features: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    for row, track in zip(seed_rows, _rows_with_features(seed_rows), strict=True):
        if track is not None:
            seed_features[row["msd_track_id"]].append(track)
    msd, _ = scan_msd(msd_source)
    msd_by_id = {t.track_id: t for t in msd}
    index = index_spotify(spotify, MatchReport())
    present = [tid for tid in seed_features if tid in msd_by_id]
    found = agree = 0
    for tid in present:
        hit, _ = find_spotify(msd_by_id[tid], index)
        if hit is None:
            continue
        found += 1
        agree += any(_same_features(hit.features, f) for f in seed_features[tid])
    conflicting = sum(
        1 for rows in seed_features.values() if any(not _same_features(rows[0], other) for other in rows[1:])
    )
    return {
        "seed_rows": len(seed_rows),
        "seed_msd_tracks": len(seed_features),
        "seed_msd_tracks_with_conflicting_rows": conflicting,
        "seed_msd_tracks_in_metadata": len(present),
        "matched_again": found,
        "matched_with_seed_features": agree,
        "recall": found / len(present) if present else 0.0,
        "agreement": agree / found if found else 0.0,
    }


def _rows_with_features(rows: Sequence[dict[str, str]]) -> list[tuple[float, ...] | None]:
    out: list[tuple[float, ...] | None] = []
    for row in rows:
        try:
            out.append(tuple(float(row[name]) for name in FEATURE_NAMES))
        except (KeyError, TypeError, ValueError):
            out.append(None)
    return out


def match(
    spotify: Sequence[SpotifyTrack], msd: Sequence[MsdTrack], midis: dict[str, list[Path]]
) -> tuple[list[MatchRow], MatchReport]:
    """Join the three sources; one row per matched MIDI file."""
    report = MatchReport(spotify_rows=len(spotify), msd_tracks=len(msd))
    report.midi_tracks = len(midis)
    report.midi_files = sum(len(paths) for paths in midis.values())
    spotify_index = index_spotify(spotify, report)

    msd_by_id = {track.track_id: track for track in msd}
    tracks_per_key = Counter(match_key(t.artist, t.title) for t in msd if t.track_id in midis)
    report.msd_keys_with_several_tracks = sum(1 for n in tracks_per_key.values() if n > 1)

    rows: list[MatchRow] = []
    for track_id in sorted(midis):
        meta = msd_by_id.get(track_id)
        if meta is None:
            report.midi_tracks_without_msd += 1
            continue
        hit, by_one_artist = find_spotify(meta, spotify_index)
        report.matched_by_one_of_several_artists += by_one_artist
        if hit is None:
            report.unmatched_tracks += 1
            continue
        report.matched_tracks += 1
        if len(midis[track_id]) > 1:
            report.tracks_with_several_midis += 1
        for midi in midis[track_id]:
            rows.append(MatchRow(track_id, str(midi), hit.spotify_id, meta.artist, meta.title, hit.features))
    report.matched_midi_files = len(rows)
    return rows, report


# --- table i/o ---------------------------------------------------------------------------------

TABLE_COLUMNS: tuple[str, ...] = (
    "msd_track_id",
    "midi_path",
    "spotify_id",
    "artist",
    "title",
    *FEATURE_NAMES,
)


def write_table(rows: Iterable[MatchRow], path: Path) -> None:
    """Write the matched table as CSV (absolute MIDI paths)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row.as_csv_row())


def read_table(path: Path) -> list[MatchRow]:
    """Read a table written by :func:`write_table`."""
    path = Path(path)
    if not path.is_file():
        raise MatchInputError(f"matched table not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in TABLE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise MatchInputError(f"{path}: missing columns {missing}")
        try:
            return [
                MatchRow(
                    r["msd_track_id"],
                    r["midi_path"],
                    r["spotify_id"],
                    r["artist"],
                    r["title"],
                    tuple(float(r[n]) for n in FEATURE_NAMES),
                )
                for r in reader
            ]
        except ValueError as exc:
            raise MatchInputError(f"{path}: bad feature value ({exc})") from exc


# --- command line ------------------------------------------------------------------------------


def run_match(spotify_csv: Path, msd_source: Path, lmd_root: Path) -> tuple[list[MatchRow], MatchReport]:
    """Read the three sources and match them."""
    spotify, skipped = read_spotify_csv(spotify_csv)
    msd, msd_errors = scan_msd(msd_source)
    midis = scan_lmd_matched(lmd_root)
    rows, report = match(spotify, msd, midis)
    report.spotify_rows_skipped = skipped
    report.msd_files_unreadable = msd_errors["unreadable h5"]
    return rows, report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.data.match_spotify", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--spotify", type=Path, required=True, help="Spotify tracks CSV")
    parser.add_argument("--msd", type=Path, required=True, help="MSD summary .h5 or folder of .h5 files")
    parser.add_argument("--lmd", type=Path, help="lmd_matched root")
    parser.add_argument("--out", type=Path, default=Path("data/spotify_matched.csv"))
    parser.add_argument("--report", type=Path, default=None, help="JSON report (default: <out>.report.json)")
    parser.add_argument(
        "--compare-seed",
        action="store_true",
        help="instead: rematch --spotify (a table with msd_track_id, like the original report's) against "
        "--msd and print the agreement",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.compare_seed:
        try:
            print(json.dumps(compare_with_seed(args.spotify, args.msd), indent=2))
        except MatchInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.lmd is None:
        parser.error("--lmd is required")
    try:
        rows, report = run_match(args.spotify, args.msd, args.lmd)
    except MatchInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_table(rows, args.out)
    report_path = args.report or args.out.with_suffix(".report.json")
    report_path.write_text(json.dumps(report.to_dict(), indent=2))
    print(report.summary())
    print(f"wrote {args.out} and {report_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
