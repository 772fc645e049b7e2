"""Spotify valence, energy and tempo for the songs of ``multi/rpbot.zip``, matched by artist and title.

``rpbot.index.csv`` names each file's artist and title (from the scraped file names);
``spotify/lakh_msd_spotify_features.csv`` gives Spotify's tempo, valence and energy of 21,425 Lakh/MSD
tracks with their artist and title. The match runs in two stages on the keys of
:func:`training.data.match_spotify.match_key` (folded, bracketed notes and version suffixes dropped):

1. **exact**: the same normalised (artist, title); the full artist credit first, then each credited
   artist alone (:func:`training.data.match_spotify.artist_keys`);
2. **fuzzy** (files the exact stage left): an artist whose key is within ``artist_cutoff`` of the
   file's (difflib ratio; candidates share the first letter), then the title closest to the file's,
   at least ``title_cutoff``. A tie between different tracks with different features is *ambiguous*:
   counted and left unmatched.

Several Spotify rows with one key and different features are counted as conflicts; the first row (in
track-id order) is used. Run ``python -m training.data.label_rpbot`` for the counts.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training.data.match_spotify import artist_keys, match_key, normalise_title

#: The features the Lakh/MSD table gives, by their ``e2m_live.features`` names.
SPOTIFY_FIELDS = ("valence", "energy", "tempo")
TABLE = Path("spotify") / "lakh_msd_spotify_features.csv"
ARTIST_CUTOFF = 0.9
TITLE_CUTOFF = 0.9


@dataclass(frozen=True)
class SpotifyLabel:
    """Spotify's valence, energy and tempo of one MSD track."""

    track_id: str
    artist: str
    title: str
    valence: float
    energy: float
    tempo: float

    def values(self) -> dict[str, float]:
        return {"valence": self.valence, "energy": self.energy, "tempo": self.tempo}


@dataclass
class LabelReport:
    """How the files of the index matched."""

    files: int = 0
    exact: int = 0
    fuzzy: int = 0
    ambiguous: int = 0
    unmatched: int = 0
    no_title: int = 0
    table_rows: int = 0
    table_rows_skipped: int = 0
    table_conflicting_keys: int = 0
    songs_matched: int = 0
    fuzzy_examples: list[tuple[str, str, str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items()}


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_labels(path: Path) -> tuple[list[SpotifyLabel], int]:
    """Rows of the Lakh/MSD Spotify table with at least one of the three features (NaN for a missing one);
    also the number of rows skipped."""
    labels, skipped = [], 0
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            values = [_number(row.get(name)) for name in SPOTIFY_FIELDS]
            if not any(math.isfinite(v) for v in values):
                skipped += 1
                continue
            labels.append(SpotifyLabel(row["track_id"], row["artist"], row["title"], *values))
    labels.sort(key=lambda label: label.track_id)
    return labels, skipped


def _same(a: SpotifyLabel, b: SpotifyLabel) -> bool:
    """Equal features (NaN equal to NaN)."""
    return all(
        x == y or (math.isnan(x) and math.isnan(y))
        for x, y in zip(a.values().values(), b.values().values(), strict=True)
    )


class LabelIndex:
    """Spotify labels by normalised (artist, title), with a per-artist title list for fuzzy lookup."""

    def __init__(self, labels: Iterable[SpotifyLabel], report: LabelReport | None = None) -> None:
        self.by_key: dict[tuple[str, str], SpotifyLabel] = {}
        self.titles: dict[str, dict[str, list[SpotifyLabel]]] = defaultdict(lambda: defaultdict(list))
        conflicts: set[tuple[str, str]] = set()
        for label in labels:
            key = match_key(label.artist, label.title)
            first = self.by_key.setdefault(key, label)
            if first is not label and _same(first, label) is False:
                conflicts.add(key)
            self.titles[key[0]][key[1]].append(label)
        self.artists_by_letter: dict[str, list[str]] = defaultdict(list)
        for artist in sorted(self.titles):
            self.artists_by_letter[artist[:1]].append(artist)
        if report is not None:
            report.table_conflicting_keys = len(conflicts)

    def exact(self, artist: str, title: str) -> SpotifyLabel | None:
        key_title = normalise_title(title)
        for key_artist in artist_keys(artist):
            found = self.by_key.get((key_artist, key_title))
            if found is not None:
                return found
        return None

    def fuzzy(
        self,
        artist: str,
        title: str,
        *,
        artist_cutoff: float = ARTIST_CUTOFF,
        title_cutoff: float = TITLE_CUTOFF,
    ) -> tuple[SpotifyLabel | None, bool]:
        """(label, ambiguous): the closest title of the closest artists; ambiguous when the best score is
        shared by tracks with different features."""
        key_artist, key_title = match_key(artist, title)
        if not key_artist or not key_title:
            return None, False
        artists = difflib.get_close_matches(
            key_artist, self.artists_by_letter.get(key_artist[:1], []), n=3, cutoff=artist_cutoff
        )
        best: list[SpotifyLabel] = []
        best_score = title_cutoff
        for candidate in artists:
            for other, labels in self.titles[candidate].items():
                matcher = difflib.SequenceMatcher(None, key_title, other)
                if matcher.real_quick_ratio() < best_score or matcher.quick_ratio() < best_score:
                    continue
                score = matcher.ratio()
                if score > best_score + 1e-12:
                    best, best_score = list(labels), score
                elif abs(score - best_score) <= 1e-12:
                    best.extend(labels)
        if not best:
            return None, False
        if any(not _same(best[0], other) for other in best[1:]):
            return None, True
        return best[0], False


@dataclass(frozen=True)
class IndexRow:
    """One row of ``rpbot.index.csv``."""

    file: str
    genre: str
    artist: str
    title: str
    note_hash: str


def read_index(path: Path) -> list[IndexRow]:
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [
            IndexRow(r["file"], r.get("genre", ""), r.get("artist", ""), r.get("title", ""), r["note_hash"])
            for r in csv.DictReader(handle)
        ]


def match_index(
    rows: Sequence[IndexRow],
    labels: Sequence[SpotifyLabel],
    *,
    fuzzy: bool = True,
    table_rows_skipped: int = 0,
) -> tuple[dict[str, tuple[SpotifyLabel, str]], LabelReport]:
    """file -> (label, "exact" | "fuzzy") for the rows that matched, and the counts."""
    report = LabelReport(files=len(rows), table_rows=len(labels), table_rows_skipped=table_rows_skipped)
    index = LabelIndex(labels, report)
    matched: dict[str, tuple[SpotifyLabel, str]] = {}
    # one lookup per distinct (artist, title): versions of a song share it
    cache: dict[tuple[str, str], tuple[SpotifyLabel | None, str]] = {}
    for row in rows:
        if not row.title.strip():
            report.no_title += 1
            continue
        key = match_key(row.artist, row.title)
        if key not in cache:
            label = index.exact(row.artist, row.title)
            how = "exact"
            if label is None and fuzzy:
                label, ambiguous = index.fuzzy(row.artist, row.title)
                how = "ambiguous" if ambiguous else "fuzzy"
                if label is not None and len(report.fuzzy_examples) < 20:
                    report.fuzzy_examples.append((row.artist, row.title, label.artist, label.title))
            cache[key] = (label, how if label is not None or how == "ambiguous" else "none")
        label, how = cache[key]
        if how == "exact":
            report.exact += 1
        elif how == "fuzzy":
            report.fuzzy += 1
        elif how == "ambiguous":
            report.ambiguous += 1
        else:
            report.unmatched += 1
        if label is not None:
            matched[row.file] = (label, how)
    report.songs_matched = len({match_key(r.artist, r.title) for r in rows if r.file in matched})
    return matched, report


def feature_tuple(label: SpotifyLabel, order: Sequence[str]) -> tuple[float, ...]:
    """The label as a feature vector in ``order``, NaN where Spotify's table has no value."""
    values: Mapping[str, float] = label.values()
    return tuple(float(values.get(name, math.nan)) for name in order)


def main(argv: Sequence[str] | None = None) -> int:
    from training.common import default_datasets_root

    parser = argparse.ArgumentParser(
        prog="python -m training.data.label_rpbot", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--datasets", type=Path, default=None, help="datasets root (default: shared/datasets)"
    )
    parser.add_argument("--exact-only", action="store_true", help="skip the fuzzy stage")
    parser.add_argument("--out", type=Path, default=None, help="write file,how,track_id,artist,title,... CSV")
    args = parser.parse_args(argv)
    root = args.datasets or default_datasets_root()
    try:
        rows = read_index(root / "multi" / "rpbot.index.csv")
        labels, skipped = read_labels(root / TABLE)
    except (OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    matched, report = match_index(rows, labels, fuzzy=not args.exact_only, table_rows_skipped=skipped)
    print(json.dumps(report.to_dict(), indent=1))
    if args.out is not None:
        with args.out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "how", "track_id", "spotify_artist", "spotify_title", *SPOTIFY_FIELDS])
            for file, (label, how) in sorted(matched.items()):
                writer.writerow(
                    [file, how, label.track_id, label.artist, label.title, *label.values().values()]
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
