"""The multi-instrument corpora of ``multi/*.zip``, read in place from their archives.

Each archive has an ``index.csv`` beside it (``<name>.index.csv``, or inside the archive) with the file
name, its labels and ``note_hash`` (:func:`training.data.corpora.note_hash`). A reader lists :class:`Piece`
objects whose ``path`` is the archive and ``member`` the entry; nothing is extracted to disk.

Song ids (versions of one song share one, so the split never separates them):

* ``rpbot``: normalised artist + title (:func:`training.data.match_spotify.match_key`), else the note hash;
  files matched to the Lakh/MSD Spotify table carry its valence, energy and tempo
  (:mod:`training.data.label_rpbot`);
* ``pvgm``: the title, folded, without its ``XG``/``GM`` suffix (several songs exist in both versions);
* ``omis``: the title part of the file name (``<site>__<hash>_<title>.mid``), else the note hash;
* ``freedoom``: the title.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from training.data.corpora import Corpus, CorpusError, Piece
from training.data.match_spotify import match_key

FOLDER = "multi"
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_VERSION_SUFFIX = re.compile(r"(xg|gm)$")
_OMIS_NAME = re.compile(r"^[^_]*(?:_[^_]+)*?__[0-9a-f]{6,}_(?P<title>.*)$")


def _read_index(folder: Path, name: str) -> tuple[Path, list[dict[str, str]]]:
    archive = folder / f"{name}.zip"
    if not archive.is_file():
        raise CorpusError(f"corpus archive not found: {archive}")
    beside = folder / f"{name}.index.csv"
    try:
        if beside.is_file():
            text = beside.read_text(encoding="utf-8")
        else:
            with zipfile.ZipFile(archive) as z:
                text = z.read("index.csv").decode("utf-8")
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise CorpusError(f"{archive}: no readable index.csv ({exc})") from exc
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and not {"file", "note_hash"} <= set(rows[0]):
        raise CorpusError(f"{archive} index: needs columns file and note_hash, has {sorted(rows[0])}")
    return archive, rows


def _squash(text: str) -> str:
    return _NON_ALNUM.sub(" ", text.casefold()).strip()


def _pieces(
    folder: Path, name: str, song_of: Callable[[dict[str, str]], str], spotify: dict[str, tuple] | None = None
) -> list[Piece]:
    archive, rows = _read_index(folder, name)
    pieces = []
    for row in rows:
        song = song_of(row) or row["note_hash"]
        pieces.append(
            Piece(
                archive,
                name,
                song,
                spotify=(spotify or {}).get(row["file"]),
                member=row["file"],
                note_hash=row["note_hash"] or None,
            )
        )
    return sorted(pieces, key=lambda p: p.member or "")


def rpbot_song_id(row: dict[str, str]) -> str:
    if not row.get("title", "").strip():
        return ""
    artist, title = match_key(row.get("artist", ""), row["title"])
    return f"{artist}|{title}" if title else ""


@cache
def rpbot_spotify(folder: Path) -> dict[str, tuple[float, ...]]:
    """file -> features (``FEATURE_ORDER``; NaN except valence, energy, tempo) of the matched rpbot files;
    empty when the Spotify table is not beside the ``multi`` folder."""
    from e2m_live.features import FEATURE_ORDER
    from training.data.label_rpbot import TABLE, feature_tuple, match_index, read_index, read_labels

    table = folder.parent / TABLE
    if not table.is_file():
        return {}
    labels, skipped = read_labels(table)
    matched, _ = match_index(read_index(folder / "rpbot.index.csv"), labels, table_rows_skipped=skipped)
    return {file: feature_tuple(label, FEATURE_ORDER) for file, (label, _) in matched.items()}


def scan_rpbot(folder: Path) -> list[Piece]:
    spotify = rpbot_spotify(folder.resolve()) if (folder / "rpbot.index.csv").is_file() else {}
    return _pieces(folder, "rpbot", rpbot_song_id, spotify)


def pvgm_song_id(row: dict[str, str]) -> str:
    title = _squash(row.get("title", "")).replace(" ", "")
    return _VERSION_SUFFIX.sub("", title) or title


def scan_pvgm(folder: Path) -> list[Piece]:
    return _pieces(folder, "pvgm", pvgm_song_id)


def omis_song_id(row: dict[str, str]) -> str:
    match = _OMIS_NAME.match(Path(row["file"]).stem)
    title = _squash(match["title"]) if match else ""
    return title.replace(" ", "")


def scan_omis(folder: Path) -> list[Piece]:
    return _pieces(folder, "omis", omis_song_id)


def scan_freedoom(folder: Path) -> list[Piece]:
    return _pieces(folder, "freedoom", lambda row: _squash(row.get("title", "")))


RESEARCH_USE = "no licence stated: research use"
MULTI_CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in (
        Corpus("rpbot", FOLDER, RESEARCH_USE, scan_rpbot),
        Corpus(
            "pvgm", FOLDER, "third-party sequences (repository MIT covers code only): research use", scan_pvgm
        ),
        Corpus("omis", FOLDER, RESEARCH_USE, scan_omis),
        Corpus("freedoom", FOLDER, "BSD-3-Clause", scan_freedoom),
    )
}


def present(datasets_root: Path) -> list[str]:
    """The multi corpora whose archive exists under ``datasets_root``."""
    return [name for name in MULTI_CORPORA if (Path(datasets_root) / FOLDER / f"{name}.zip").is_file()]


def spotify_partial(piece: Piece) -> bool:
    """Whether only some of the piece's features are Spotify's."""
    return piece.spotify is not None and any(math.isnan(v) for v in piece.spotify)
