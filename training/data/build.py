"""Build the training set: corpora -> 12-bar segments of description + REMI+ tokens + features.

``python -m training.data.build`` scans the corpus folders of the shared datasets and the
``multi/*.zip`` archives (read in place), or those named with ``--corpora``, plus a Spotify-matched
table from ``training.data.match_spotify``. It runs in two steps:

1. **extract** (parallel, ``--workers``): each MIDI file once (POP909 bars from its ``beat_midi.txt``)
   into a per-file cache entry: REMI+ and description tokens bar by bar, the raw descriptors of its
   segments of ``--segment-bars`` bars every ``--stride`` bars, and its note hash. The entry's key is
   the corpus, the file, its size and CRC (zip) or mtime, and the extractor's code version, so a second
   run extracts only what changed. ``--shard i/n`` runs only this step for every n-th file (a cluster
   job array); ``merge`` (or a plain run) then does step 2.
2. **assemble**: drop files whose note content repeats an earlier one, split by song (seeded, per
   corpus), label each segment (the calibrated estimate of the ten features; Spotify's where the song
   was matched, flagged) and write ``.npz`` shards per split plus ``manifest.json``.

Unreadable files are skipped and counted with their reason. The format is read by
:mod:`training.data.dataset`; see ``docs/dataset.md``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import shutil
import signal
import sys
import time
import traceback
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from e2m_live.description.vocab import BAR_KEY, MAX_BARS, DescriptionVocab, RemiVocab
from training.common import REPO, default_datasets_root
from training.data.corpora import (
    CORPORA,
    SPOTIFY_MATCHED,
    CorpusError,
    Piece,
    annotated_time_signatures,
    licence_of,
    note_hash,
    read_piece_bytes,
    read_pop909_downbeats,
    scan_corpora,
)
from training.data.dataset import FEATURE_SOURCES, MANIFEST, SHARD_FORMAT, SPLITS
from training.data.multi_corpora import MULTI_CORPORA
from training.data.multi_corpora import present as present_multi

log = logging.getLogger(__name__)

DEFAULT_OUT = REPO / "data" / "dataset"
CONFIG_FILE = "build_config.json"
SPLITS_FILE = "splits.json"
N_FEATURES = 10


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides the content of the shards (its hash guards resuming)."""

    datasets_root: str
    corpora: tuple[str, ...]
    spotify_table: str | None = None
    segment_bars: int = 12
    stride: int = 4
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.05
    chunk_size: int = 16
    limit_per_corpus: int | None = None
    #: a seeded random sample of this many files per corpus (after ``limit_per_corpus``)
    sample_per_corpus: int | None = None

    def to_dict(self) -> dict[str, object]:
        extra = {"sample_per_corpus": self.sample_per_corpus} if self.sample_per_corpus is not None else {}
        return {
            **extra,
            "format": SHARD_FORMAT,
            "datasets_root": self.datasets_root,
            "corpora": list(self.corpora),
            "spotify_table": self.spotify_table,
            "segment_bars": self.segment_bars,
            "stride": self.stride,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "chunk_size": self.chunk_size,
            "limit_per_corpus": self.limit_per_corpus,
        }

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


# --- splits -------------------------------------------------------------------------------------


def assign_splits(
    pieces: dict[str, list[Piece]], *, seed: int, val_fraction: float, test_fraction: float
) -> dict[str, dict[str, str]]:
    """corpus -> song id -> split. Per corpus: a seeded permutation of the sorted song ids; the first
    ``val_fraction`` of songs go to val, the next ``test_fraction`` to test, the rest to train."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val and test fractions must be in [0, 1) and sum to less than 1")
    assignment: dict[str, dict[str, str]] = {}
    for corpus, corpus_pieces in sorted(pieces.items()):
        songs = sorted({p.song_id for p in corpus_pieces})
        # A stable per-corpus seed, so adding a corpus does not reshuffle the others.
        corpus_seed = int.from_bytes(hashlib.sha256(f"{seed}:{corpus}".encode()).digest()[:8], "little")
        order = np.random.default_rng(corpus_seed).permutation(len(songs))
        n_val = round(val_fraction * len(songs))
        n_test = round(test_fraction * len(songs))
        split_of = {}
        for rank, index in enumerate(order):
            split_of[songs[index]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
        assignment[corpus] = split_of
    return assignment


# --- one piece ----------------------------------------------------------------------------------


class SkipPiece(Exception):
    """The piece cannot be used; the message is the reason counted in the manifest."""


@dataclass
class PieceResult:
    remi_bars: list[np.ndarray]
    desc_bars: list[np.ndarray]
    seg_starts: list[int]
    seg_features: list[np.ndarray]
    seg_estimated: list[np.ndarray]
    seg_descriptors: list[np.ndarray]
    seg_source: list[int]
    unknown_tokens: int = 0
    segments_failed: int = 0
    assumed_four_four: bool = False


def _bar_number(token: str) -> int:
    return int(token.partition("_")[2])


def _first_note_time(midi: object) -> float:
    starts = [note.start for inst in midi.instruments for note in inst.notes]  # type: ignore[attr-defined]
    return min(starts) if starts else 0.0


def bar_start_times(
    midi: object, downbeats: Sequence[float] | None, bar_numbers: Sequence[int]
) -> np.ndarray:
    """Start time in seconds of each extracted bar, plus the end of the last one.

    FIGARO's extraction drops the empty bars before the first note and numbers the rest from
    ``Bar_1``; ``Bar_n`` is therefore the downbeat ``n - 1`` after the bar holding the first note.
    """
    grid = np.asarray(downbeats if downbeats is not None else midi.get_downbeats(), dtype=float)  # type: ignore[attr-defined]
    end_time = float(midi.get_end_time())  # type: ignore[attr-defined]
    if len(grid) == 0:
        grid = np.array([0.0])
    first = max(0, int(np.searchsorted(grid, _first_note_time(midi), side="right")) - 1)
    if len(bar_numbers) and grid[-1] < end_time:
        # extend a regular grid past the last annotated downbeat if notes go on
        step = float(np.median(np.diff(grid))) if len(grid) > 1 else max(end_time - grid[0], 1.0)
        extra = np.arange(grid[-1] + step, end_time + step, step)
        grid = np.concatenate([grid, extra])
    idx = np.asarray([first + n - 1 for n in bar_numbers] + [first + bar_numbers[-1]], dtype=int)
    idx = np.clip(idx, 0, len(grid) - 1)
    times = grid[idx]
    times[-1] = max(times[-1], times[-2] if len(times) > 1 else times[-1])
    return times


def process_piece(
    piece: Piece, *, segment_bars: int, stride: int, data: bytes | None = None, estimate: bool = True
) -> PieceResult:
    """Extract one file (or its ``data``) and cut it into segments; raises :class:`SkipPiece` with a
    reason. Without ``estimate`` the segments' features are left NaN (only the descriptors are kept)."""
    from e2m_live.analysis import DESCRIPTOR_NAMES, describe_segment
    from e2m_live.description.extract import MidiError, extract, load_midi

    try:
        if data is None and piece.member is not None:
            data = read_piece_bytes(piece)
        midi = load_midi(data if data is not None else piece.path)
    except (MidiError, OSError, ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile) as exc:
        raise SkipPiece(f"unreadable MIDI: {type(exc).__name__}") from exc
    # No time signature event means 4/4 by the MIDI standard; FIGARO's extraction needs one to find bars
    # (a fifth of the multi corpora's files have none).
    assumed = not midi.time_signature_changes and piece.beats_file is None
    if assumed:
        import pretty_midi

        midi.time_signature_changes = [pretty_midi.TimeSignature(4, 4, 0.0)]
    downbeats = None
    if piece.beats_file is not None:
        try:
            downbeats = read_pop909_downbeats(piece.beats_file)
        except CorpusError as exc:
            raise SkipPiece("bad beat annotation") from exc
        midi.time_signature_changes = annotated_time_signatures(midi, downbeats)
    try:
        extraction = extract(midi, downbeats=downbeats)
    except (MidiError, ValueError, IndexError, ZeroDivisionError) as exc:
        raise SkipPiece(f"extraction failed: {type(exc).__name__}") from exc
    remi_bars = extraction.remi_bars()
    desc_bars = extraction.description_bars()
    if len(remi_bars) != len(desc_bars):
        raise SkipPiece("REMI and description bar counts differ")
    # Bar tokens above Bar_511 are not in FIGARO's vocabularies: keep the first 511 bars.
    n_bars = min(len(desc_bars), MAX_BARS - 1)
    remi_bars, desc_bars = remi_bars[:n_bars], desc_bars[:n_bars]
    if n_bars < segment_bars:
        raise SkipPiece(f"shorter than {segment_bars} bars")

    remi_vocab, desc_vocab = _vocabs()
    remi_ids = [np.asarray(remi_vocab.encode(bar), dtype=np.int16) for bar in remi_bars]
    desc_ids = [np.asarray(desc_vocab.encode(bar), dtype=np.int16) for bar in desc_bars]
    unknown = sum(int(np.count_nonzero(b == remi_vocab.unk_id)) for b in remi_ids) + sum(
        int(np.count_nonzero(b == desc_vocab.unk_id)) for b in desc_ids
    )

    numbers = [
        _bar_number(bar[0]) if bar and bar[0].startswith(BAR_KEY + "_") else i + 1
        for i, bar in enumerate(desc_bars)
    ]
    times = bar_start_times(midi, downbeats, numbers)
    result = PieceResult(
        remi_ids, desc_ids, [], [], [], [], [], unknown_tokens=unknown, assumed_four_four=assumed
    )
    spotify = np.asarray(piece.spotify, dtype=np.float32) if piece.spotify is not None else None
    for start in range(0, n_bars - segment_bars + 1, stride):
        t0, t1 = float(times[start]), float(times[start + segment_bars])
        try:
            raw = describe_segment(midi, start=t0, end=t1 if t1 > t0 else None)
            descriptors = np.asarray([raw[name] for name in DESCRIPTOR_NAMES], dtype=np.float32)
        except (ValueError, ZeroDivisionError, IndexError, FloatingPointError):
            result.segments_failed += 1
            continue
        estimated = (
            features_from_descriptors(descriptors) if estimate else np.full(N_FEATURES, np.nan, np.float32)
        )
        result.seg_starts.append(start)
        result.seg_descriptors.append(descriptors)
        result.seg_estimated.append(estimated)
        result.seg_features.append(spotify if spotify is not None else estimated)
        result.seg_source.append(1 if spotify is not None else 0)
    if not result.seg_starts:
        raise SkipPiece("no segment could be labelled")
    return result


_CALIBRATION: list[object] = []


def calibration_available() -> bool:
    """Whether the feature calibration of ``e2m_live.analysis`` loads (looked up once per process)."""
    if not _CALIBRATION:
        from e2m_live.analysis import load_calibration

        try:
            _CALIBRATION.append(load_calibration())
        except (OSError, ValueError, KeyError):
            _CALIBRATION.append(None)
    return _CALIBRATION[0] is not None


def features_from_descriptors(descriptors: np.ndarray) -> np.ndarray:
    """The ten estimated features (FEATURE_ORDER) of one descriptor row, or of rows ``[n, d]`` at once
    (vectorised: ~1000x faster than row by row); NaN without a calibration (the reader fills them in
    later from the stored descriptors, see ``training.data.dataset``)."""
    descriptors = np.asarray(descriptors, dtype=np.float32)
    if not calibration_available():
        return np.full((*descriptors.shape[:-1], N_FEATURES), np.nan, np.float32)
    from e2m_live.analysis import feature_matrix

    matrix = feature_matrix(descriptors.reshape(-1, descriptors.shape[-1]), _CALIBRATION[0])  # type: ignore[arg-type]
    return matrix.reshape(*descriptors.shape[:-1], N_FEATURES)


_VOCABS: tuple[RemiVocab, DescriptionVocab] | None = None


def _vocabs() -> tuple[RemiVocab, DescriptionVocab]:
    global _VOCABS
    if _VOCABS is None:
        _VOCABS = (RemiVocab(), DescriptionVocab())
    return _VOCABS


def _descriptor_names() -> tuple[str, ...]:
    from e2m_live.analysis import DESCRIPTOR_NAMES

    return DESCRIPTOR_NAMES


def _feature_order() -> tuple[str, ...]:
    from e2m_live.features import FEATURE_ORDER

    return FEATURE_ORDER


# --- one file = one cache entry ---------------------------------------------------------------------

#: Bump when ``extract_piece`` changes what it stores; the sources of the modules it runs are hashed too.
EXTRACTOR_VERSION = 2
_EXTRACTOR_MODULES = (
    "e2m_live/description/extract.py",
    "e2m_live/description/midi_reader.py",
    "e2m_live/description/chords.py",
    "e2m_live/description/vocab.py",
    "e2m_live/analysis.py",
    "e2m_live/music.py",
)


#: Where the part of a module that the cached extraction runs ends: the rest of ``analysis.py`` turns
#: descriptors into features (composites, calibration), applied when the shards are written, so a new
#: calibration or composite does not invalidate the cache.
_CACHED_PART_END = {"e2m_live/analysis.py": b"\n# Composites: "}


def extractor_source(name: str, text: bytes) -> bytes:
    """The part of a module's source that the cached extraction depends on, as its syntax tree
    without docstrings, comments, layout and type annotations: reformatting, retyping or
    re-documenting the extractor keeps a cache of 30k files (an hour of CPU) valid; a change to
    what the code does invalidates it. Source that does not parse is hashed as it is."""
    marker = _CACHED_PART_END.get(name)
    if marker is not None and marker in text:
        text = text[: text.index(marker)]
    try:
        tree = _WithoutDocsOrTypes().visit(ast.parse(text))
    except SyntaxError:
        return text
    return ast.dump(tree, annotate_fields=False, include_attributes=False).encode()


class _WithoutDocsOrTypes(ast.NodeTransformer):
    """Drops docstrings and type annotations (and imports only used by them stay: harmless)."""

    def _body(self, node: ast.AST) -> ast.AST:
        body = getattr(node, "body", None)
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        return self.generic_visit(node)

    visit_Module = visit_ClassDef = _body

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.returns = None
        return self._body(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.annotation = None
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return None  # a bare declaration does nothing at run time
        return ast.Assign(targets=[node.target], value=self.visit(node.value), lineno=0)


def extractor_digest() -> str:
    """Hash of the extractor's code version: ``EXTRACTOR_VERSION`` and the source of its modules (of
    ``analysis.py`` only the descriptor part, see ``_CACHED_PART_END``)."""
    digest = hashlib.sha256(f"v{EXTRACTOR_VERSION}".encode())
    for name in _EXTRACTOR_MODULES:
        path = REPO / name
        digest.update(name.encode() + (extractor_source(name, path.read_bytes()) if path.is_file() else b"-"))
    return digest.hexdigest()[:16]


def _archive_infos(path: Path) -> dict[str, zipfile.ZipInfo]:
    stat = Path(path).stat()
    key = f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    infos = _ZIP_INFOS.get(key)
    if infos is None:
        with zipfile.ZipFile(path) as archive:
            infos = _ZIP_INFOS[key] = {i.filename: i for i in archive.infolist()}
    return infos


_ZIP_INFOS: dict[str, dict[str, zipfile.ZipInfo]] = {}


def cache_key(piece: Piece, config: BuildConfig, code: str) -> str:
    """The key of a file's cache entry: corpus, file, its size and CRC (zip entry) or size and mtime, the
    beat annotation's, the segment layout and the extractor's code version."""
    parts = [code, piece.corpus, piece.name, str(config.segment_bars), str(config.stride)]
    if piece.member is not None:
        info = _archive_infos(Path(piece.path)).get(piece.member)
        parts += [str(info.file_size), str(info.CRC)] if info is not None else ["missing"]
    for path in (piece.path, piece.beats_file) if piece.member is None else ():
        if path is None:
            continue
        try:
            stat = Path(path).stat()
            parts += [str(stat.st_size), str(stat.st_mtime_ns)]
        except OSError:
            parts.append("missing")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def cache_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / key[:2] / f"{key}.npz"


def extract_piece(piece: Piece, *, segment_bars: int, stride: int) -> tuple[PieceResult, str]:
    """The tokens and segment descriptors of one file, and its note hash (estimated features are not
    computed here: they depend on the calibration, applied when the shards are written)."""
    from e2m_live.description.extract import MidiError

    try:
        data = read_piece_bytes(piece)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise SkipPiece(f"unreadable MIDI: {type(exc).__name__}") from exc
    try:  # the zips' index holds it already (computing it is ~10 % of a file's extraction)
        digest = piece.note_hash or note_hash(data)
    except ValueError:
        digest = ""
    try:
        result = process_piece(piece, segment_bars=segment_bars, stride=stride, data=data, estimate=False)
    except MidiError as exc:  # raised by load_midi for bytes it cannot read
        raise SkipPiece(f"unreadable MIDI: {type(exc).__name__}") from exc
    return result, digest


def _write_npz(path: Path, arrays: dict[str, np.ndarray], compressed: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
    os.replace(tmp, path)


def extract_to_cache(piece: Piece, key: str, cache_dir: Path, config: BuildConfig, timeout_s: float) -> dict:
    """Extract one file into its cache entry (a skip is cached with its reason, except a timeout or an
    unforeseen error, which the next run retries); returns ``{"key", "skip", "seconds"}``."""
    began, cpu_began = time.perf_counter(), time.process_time()
    skip, cacheable = "", True
    result, digest = None, ""
    try:
        result, digest = _with_timeout(
            timeout_s, extract_piece, piece, segment_bars=config.segment_bars, stride=config.stride
        )
    except SkipPiece as exc:
        skip = str(exc)
    except _Timeout:
        skip, cacheable = f"timeout after {timeout_s:g} s", False
    except Exception as exc:  # an unforeseen failure in one file must not end the build
        skip, cacheable = f"error: {type(exc).__name__}", False
        log.warning("skip %s: %s: %s", piece.name, type(exc).__name__, exc)
        log.debug("%s", traceback.format_exc())
    if skip:
        log.warning("skip %s: %s", piece.name, skip)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu_began
    if cacheable:
        arrays: dict[str, np.ndarray] = {
            "skip": np.asarray(skip),
            "note_hash": np.asarray(digest),
            "seconds": np.asarray(seconds),
            "cpu_seconds": np.asarray(cpu_seconds),
        }
        if result is not None:
            arrays.update(
                remi_ids=_concat(result.remi_bars),
                remi_bar_offsets=_offsets(result.remi_bars),
                desc_ids=_concat(result.desc_bars),
                desc_bar_offsets=_offsets(result.desc_bars),
                seg_start_bar=np.asarray(result.seg_starts, np.int32),
                seg_descriptors=np.asarray(result.seg_descriptors, np.float32).reshape(
                    -1, len(_descriptor_names())
                ),
                unknown_tokens=np.asarray(result.unknown_tokens),
                segments_failed=np.asarray(result.segments_failed),
                assumed_four_four=np.asarray(result.assumed_four_four),
            )
        _write_npz(cache_path(cache_dir, key), arrays)
    return {"key": key, "skip": skip, "seconds": seconds, "cpu_seconds": cpu_seconds, "cached": cacheable}


def _concat(bars: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(bars).astype(np.int16) if bars else np.zeros(0, np.int16)


def _offsets(bars: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([len(b) for b in bars])]).astype(np.int64)


@dataclass
class CachedPiece:
    """A file's cache entry, read back."""

    skip: str
    note_hash: str
    remi_bars: list[np.ndarray]
    desc_bars: list[np.ndarray]
    seg_starts: list[int]
    seg_descriptors: np.ndarray
    unknown_tokens: int
    segments_failed: int
    assumed_four_four: bool = False


def read_cached(path: Path) -> CachedPiece:
    with np.load(path, allow_pickle=False) as z:
        skip, digest = str(z["skip"]), str(z["note_hash"])
        if skip:
            return CachedPiece(skip, digest, [], [], [], np.zeros((0, 0), np.float32), 0, 0)
        remi, r_off = z["remi_ids"], z["remi_bar_offsets"]
        desc, d_off = z["desc_ids"], z["desc_bar_offsets"]
        return CachedPiece(
            "",
            digest,
            [remi[a:b] for a, b in itertools.pairwise(r_off)],
            [desc[a:b] for a, b in itertools.pairwise(d_off)],
            z["seg_start_bar"].tolist(),
            z["seg_descriptors"],
            int(z["unknown_tokens"]),
            int(z["segments_failed"]),
            bool(z["assumed_four_four"]),
        )


# --- one chunk = one shard ----------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    split: str
    index: int
    pieces: tuple[Piece, ...]
    keys: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.split}/{self.index:05d}"

    def digest(self) -> str:
        """What the shard is made of: its files' cache keys and labels (a changed file rewrites it)."""
        pairs = zip(self.pieces, self.keys, strict=True)
        rows = [[p.name, p.song_id, k, p.emotion, p.spotify] for p, k in pairs]
        text = json.dumps(rows)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ChunkStats:
    """Counts of one chunk, per corpus (summed into the manifest)."""

    per_corpus: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    skipped: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    songs: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    seconds: float = 0.0
    digest: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "per_corpus": {c: dict(v) for c, v in self.per_corpus.items()},
            "skipped": {c: dict(v) for c, v in self.skipped.items()},
            "songs": {c: sorted(v) for c, v in self.songs.items()},
            "seconds": self.seconds,
            "digest": self.digest,
        }


class _Timeout(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise _Timeout


def _with_timeout(seconds: float, func, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run ``func`` with a wall-clock limit (SIGALRM; main thread of a process only)."""
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        return func(*args, **kwargs)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return func(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@cache
def _instrument_ids() -> tuple[np.ndarray, int]:
    """Description ids of the ``Instrument_*`` tokens (bool mask) and of ``Instrument_drum``."""
    from e2m_live.description.vocab import DRUM_INSTRUMENT, INSTRUMENT_KEY, token

    vocab = _vocabs()[1]
    mask = np.asarray([t.startswith(INSTRUMENT_KEY + "_") for t in vocab.itos], bool)
    return mask, vocab.encode([token(INSTRUMENT_KEY, DRUM_INSTRUMENT)])[0]


def _segment_labels(piece: Piece, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, estimated, source) of a file's segments: Spotify's where the piece has them (NaN
    entries of a partial match keep the estimate)."""
    rows = np.asarray(descriptors, np.float32).reshape(-1, len(_descriptor_names()))
    estimated = features_from_descriptors(rows)
    if piece.spotify is None:
        return estimated, estimated, np.zeros(len(estimated), np.uint8)
    spotify = np.asarray(piece.spotify, np.float32)
    partial = bool(np.isnan(spotify).any())
    features = np.where(np.isnan(spotify), estimated, spotify).astype(np.float32)
    source = FEATURE_SOURCES.index("spotify_partial" if partial else "spotify")
    return features, estimated, np.full(len(estimated), source, np.uint8)


def build_chunk(chunk: Chunk, out_dir: Path, config: BuildConfig, cache_dir: Path) -> dict[str, object]:
    """Write the shard of one chunk from its files' cache entries (stats first, shard last)."""
    began = time.perf_counter()
    stats = ChunkStats(digest=chunk.digest())
    remi, desc, remi_off, desc_off, piece_bars = [], [], [0], [0], [0]
    song, corpus, file, emotion = [], [], [], []
    seg_piece, seg_start, feats, est, source, descs = [], [], [], [], [], []
    is_instrument, drum_id = _instrument_ids()
    for piece, key in zip(chunk.pieces, chunk.keys, strict=True):
        counts = stats.per_corpus[piece.corpus]
        counts["files"] += 1
        entry_path = cache_path(cache_dir, key)
        if not entry_path.is_file():
            stats.skipped[piece.corpus]["not extracted (timeout or error)"] += 1
            continue
        result = read_cached(entry_path)
        if result.skip:
            stats.skipped[piece.corpus][result.skip] += 1
            continue
        index = len(song)
        song.append(piece.song_id)
        corpus.append(piece.corpus)
        file.append(piece.name)
        emotion.append(piece.emotion if piece.emotion is not None else (math.nan, math.nan))
        first_bar = len(remi_off) - 1
        for bar in result.remi_bars:
            remi.append(bar)
            remi_off.append(remi_off[-1] + len(bar))
        for bar in result.desc_bars:
            desc.append(bar)
            desc_off.append(desc_off[-1] + len(bar))
        piece_bars.append(piece_bars[-1] + len(result.remi_bars))
        features, estimated, sources = _segment_labels(piece, result.seg_descriptors)
        seg_piece.extend([index] * len(result.seg_starts))
        seg_start.extend(result.seg_starts)
        feats.extend(features)
        est.extend(estimated)
        descs.extend(result.seg_descriptors)
        source.extend(sources.tolist())

        stats.songs[piece.corpus].add(piece.song_id)
        counts["files_used"] += 1
        counts["bars"] += len(result.remi_bars)
        counts["remi_tokens"] += remi_off[-1] - remi_off[first_bar]
        counts["description_tokens"] += desc_off[-1] - desc_off[first_bar]
        counts["segments"] += len(result.seg_starts)
        counts["segments_spotify"] += int(np.count_nonzero(sources))
        counts["segments_unlabelled"] += result.segments_failed
        counts["unknown_tokens"] += result.unknown_tokens
        counts["files_assumed_4_4"] += int(result.assumed_four_four)
        lengths_r = np.diff(remi_off[first_bar:])
        lengths_d = np.diff(desc_off[first_bar:])
        window = config.segment_bars
        for s in result.seg_starts:
            counts["segment_remi_tokens"] += int(lengths_r[s : s + window].sum())
            counts["segment_description_tokens"] += int(lengths_d[s : s + window].sum())
            ids = np.concatenate(result.desc_bars[s : s + window])
            instruments = np.unique(ids[is_instrument[ids]])
            counts["segment_instruments"] += len(instruments)
            counts["segments_with_drums"] += int(drum_id in instruments)
            counts["segments_single_instrument"] += int(len(instruments) == 1)

    arrays = {
        "remi_ids": np.concatenate(remi) if remi else np.zeros(0, np.int16),
        "remi_bar_offsets": np.asarray(remi_off, np.int64),
        "desc_ids": np.concatenate(desc) if desc else np.zeros(0, np.int16),
        "desc_bar_offsets": np.asarray(desc_off, np.int64),
        "piece_bar_offsets": np.asarray(piece_bars, np.int64),
        "piece_song_id": np.asarray(song, dtype=str),
        "piece_corpus": np.asarray(corpus, dtype=str),
        "piece_file": np.asarray(file, dtype=str),
        "piece_emotion": np.asarray(emotion, np.float32).reshape(-1, 2),
        "seg_piece": np.asarray(seg_piece, np.int32),
        "seg_start_bar": np.asarray(seg_start, np.int32),
        "seg_features": np.asarray(feats, np.float32).reshape(-1, N_FEATURES),
        "seg_features_estimated": np.asarray(est, np.float32).reshape(-1, N_FEATURES),
        "seg_features_source": np.asarray(source, np.uint8),
        "seg_descriptors": np.asarray(descs, np.float32).reshape(-1, len(_descriptor_names())),
    }
    stats.seconds = time.perf_counter() - began
    shard = out_dir / f"{chunk.name}.npz"
    shard.parent.mkdir(parents=True, exist_ok=True)
    tmp = shard.with_name(shard.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    stats_path = shard.with_suffix(".json")
    stats_tmp = stats_path.with_suffix(".json.tmp")
    stats_tmp.write_text(json.dumps(stats.to_dict()))
    # stats first, shard last: a shard's presence means the chunk is complete
    os.replace(stats_tmp, stats_path)
    os.replace(tmp, shard)
    return {"chunk": chunk.name, "files": len(chunk.pieces), "seconds": stats.seconds}


def _build_chunk_star(args: tuple[Chunk, Path, BuildConfig, Path]) -> dict[str, object]:
    return build_chunk(*args)


def _extract_star(args: tuple[Piece, str, Path, BuildConfig, float]) -> dict:
    return extract_to_cache(*args)


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")


# --- the build ----------------------------------------------------------------------------------


def scan_all(config: BuildConfig) -> dict[str, list[Piece]]:
    """Pieces of every configured corpus (folder corpora, ``multi/*.zip`` corpora, a Spotify table),
    each cut to ``limit_per_corpus``."""
    root = Path(config.datasets_root)
    folder_names = [n for n in config.corpora if n not in MULTI_CORPORA]
    pieces = scan_corpora(root, folder_names, Path(config.spotify_table) if config.spotify_table else None)
    for name in config.corpora:
        if name in MULTI_CORPORA:
            pieces[name] = MULTI_CORPORA[name].scan(root / MULTI_CORPORA[name].folder)
    if config.limit_per_corpus is not None:
        pieces = {c: p[: config.limit_per_corpus] for c, p in pieces.items()}
    if config.sample_per_corpus is not None:
        for corpus, corpus_pieces in pieces.items():
            if len(corpus_pieces) > config.sample_per_corpus:
                rng = np.random.default_rng([config.seed, len(corpus)])
                chosen = sorted(rng.choice(len(corpus_pieces), config.sample_per_corpus, replace=False))
                pieces[corpus] = [corpus_pieces[i] for i in chosen]
    return pieces


def corpus_order(names: Iterable[str]) -> list[str]:
    """Dedup priority: the folder corpora (better labels) first, then the Spotify table, then ``multi``."""
    rank = {n: i for i, n in enumerate([*CORPORA, SPOTIFY_MATCHED, *MULTI_CORPORA])}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def deduplicate(
    pieces: dict[str, list[Piece]], hashes: dict[str, str]
) -> tuple[dict[str, list[Piece]], dict[str, Counter]]:
    """Keep the first file of each note content (:func:`corpus_order`, then file name); ``hashes`` maps
    ``piece.name`` to its note hash ("" = unknown, kept). Returns the kept pieces and the dropped counts."""
    seen: dict[str, str] = {}
    kept: dict[str, list[Piece]] = {}
    dropped: dict[str, Counter] = defaultdict(Counter)
    for corpus in corpus_order(pieces):
        kept[corpus] = []
        for piece in sorted(pieces[corpus], key=lambda p: p.name):
            digest = hashes.get(piece.name) or piece.note_hash or ""
            if digest and digest in seen:
                dropped[corpus][f"duplicate note content (of {seen[digest]})"] += 1
                continue
            if digest:
                seen[digest] = corpus
            kept[corpus].append(piece)
    return kept, dropped


def make_chunks(
    pieces: dict[str, list[Piece]],
    splits: dict[str, dict[str, str]],
    chunk_size: int,
    keys: dict[str, str] | None = None,
) -> list[Chunk]:
    """Fixed chunks per split (sorted by corpus and file), so a resumed build cuts the same chunks."""
    by_split: dict[str, list[Piece]] = defaultdict(list)
    for corpus, corpus_pieces in sorted(pieces.items()):
        for piece in sorted(corpus_pieces, key=lambda p: p.name):
            by_split[splits[corpus][piece.song_id]].append(piece)
    chunks = []
    for split in SPLITS:
        members = by_split.get(split, [])
        for index in range(0, len(members), chunk_size):
            part = tuple(members[index : index + chunk_size])
            part_keys = tuple((keys or {}).get(p.name, "") for p in part)
            chunks.append(Chunk(split, index // chunk_size, part, part_keys))
    return chunks


def _prepare_out_dir(out: Path, config: BuildConfig, overwrite: bool) -> None:
    """Resume a build of the same configuration; refuse another one unless ``overwrite``."""
    config_path = out / CONFIG_FILE
    if config_path.is_file() and not overwrite:
        stored = json.loads(config_path.read_text())
        if stored.get("digest") != config.digest():
            raise ValueError(
                f"{out} holds a build with another configuration; use --overwrite or another --out"
            )
    if overwrite:
        for split in SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)
        (out / MANIFEST).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    tmp = config_path.with_name(f"{CONFIG_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"digest": config.digest(), **config.to_dict()}, indent=2))
    os.replace(tmp, config_path)


def summarise(
    out: Path,
    config: BuildConfig,
    pieces: dict[str, list[Piece]],
    seconds: float,
    dropped: dict[str, Counter] | None = None,
    chunks: Sequence[Chunk] | None = None,
) -> dict:
    """Sum the per-chunk stats into the manifest (only the shards of ``chunks`` where given)."""
    per: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    skipped: dict[str, Counter] = defaultdict(Counter)
    songs: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    cpu_seconds = 0.0
    shards = 0
    wanted = {c.name for c in chunks} if chunks is not None else None
    for split in SPLITS:
        for stats_path in sorted((out / split).glob("*.json")):
            if not stats_path.with_suffix(".npz").is_file():
                continue
            if wanted is not None and f"{split}/{stats_path.stem}" not in wanted:
                continue
            shards += 1
            stats = json.loads(stats_path.read_text())
            cpu_seconds += stats["seconds"]
            for corpus, counts in stats["per_corpus"].items():
                per[corpus][split].update(counts)
            for corpus, reasons in stats["skipped"].items():
                skipped[corpus].update(reasons)
            for corpus, ids in stats["songs"].items():
                songs[corpus][split].update(ids)
    for corpus, reasons in (dropped or {}).items():
        skipped[corpus].update(reasons)
    corpora = {}
    totals: dict[str, Counter] = defaultdict(Counter)
    for corpus in sorted(pieces):
        splits = {}
        for split in SPLITS:
            counts = Counter(per[corpus][split])
            counts["songs"] = len(songs[corpus][split])
            splits[split] = dict(counts)
            totals[split].update(counts)
        all_splits = Counter()
        for split in SPLITS:
            all_splits.update(per[corpus][split])
        n_seg = max(all_splits["segments"], 1)
        corpora[corpus] = {
            "licence": licence_of_any(corpus),
            "files_found": len(pieces[corpus]) + sum((dropped or {}).get(corpus, Counter()).values()),
            "songs_found": len({p.song_id for p in pieces[corpus]}),
            "files_spotify": sum(p.spotify is not None for p in pieces[corpus]),
            "splits": splits,
            "skipped": dict(skipped[corpus]),
            "share_segments_with_drums": round(all_splits["segments_with_drums"] / n_seg, 3),
            "share_segments_single_instrument": round(all_splits["segments_single_instrument"] / n_seg, 3),
            "instruments_per_segment": round(all_splits["segment_instruments"] / n_seg, 2),
        }
    return {
        "format": SHARD_FORMAT,
        "config": config.to_dict(),
        "feature_order": list(_feature_order()),
        "descriptor_names": list(_descriptor_names()),
        "features_calibrated": calibration_available(),
        "feature_sources": list(FEATURE_SOURCES),
        "spotify_partial_fields": ["valence", "energy", "tempo"],
        "extractor": extractor_digest(),
        "corpora": corpora,
        "totals": {split: dict(totals[split]) for split in SPLITS},
        "shards": shards,
        "chunk_seconds": round(cpu_seconds, 1),
        "build_seconds": round(seconds, 1),
    }


def licence_of_any(corpus: str) -> str:
    return MULTI_CORPORA[corpus].licence if corpus in MULTI_CORPORA else licence_of(corpus)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0 <= i < n) -> (i, n)."""
    try:
        index, _, count = text.partition("/")
        i, n = int(index), int(count)
    except ValueError as exc:
        raise ValueError(f"--shard wants i/n, e.g. 0/8; got {text!r}") from exc
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


def extract_all(
    pieces: dict[str, list[Piece]],
    config: BuildConfig,
    cache_dir: Path,
    *,
    workers: int,
    timeout_s: float,
    progress: bool,
    shard: tuple[int, int] | None = None,
    cached_only: bool = False,
) -> tuple[dict[str, str], dict[str, float]]:
    """Fill the per-file cache: extract every file (of shard ``i`` of ``n``: every n-th file of the sorted
    list) whose entry is missing (none with ``cached_only``: they are only counted, ``missing``). Returns
    piece name -> cache key (all files) and counts."""
    code = extractor_digest()
    ordered = [p for corpus in corpus_order(pieces) for p in sorted(pieces[corpus], key=lambda p: p.name)]
    keys = {p.name: cache_key(p, config, code) for p in ordered}
    mine = ordered if shard is None else ordered[shard[0] :: shard[1]]
    # a multi corpus file whose index hash repeats an earlier one is never extracted
    first_hash: dict[str, str] = {}
    todo, cached, duplicates = [], 0, 0
    for piece in mine:
        if piece.note_hash and first_hash.setdefault(piece.note_hash, piece.name) != piece.name:
            duplicates += 1
        elif cache_path(cache_dir, keys[piece.name]).is_file():
            cached += 1
        else:
            todo.append(piece)
    counts: dict[str, float] = {"files": len(mine), "cached": cached, "duplicates": duplicates}
    if cached_only:
        counts["missing"], todo = len(todo), []
    counts.update(extracted=0)
    counts.update(skipped=0, extract_cpu_seconds=0.0)
    if todo:
        preflight()
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="file", disable=not progress, smoothing=0.05, desc="extract")
    jobs = [(p, keys[p.name], cache_dir, config, timeout_s) for p in todo]
    try:
        if workers <= 1:
            results = map(_extract_star, jobs)
            for done in results:
                counts["extracted"] += 1
                counts["skipped"] += bool(done["skip"])
                counts["extract_cpu_seconds"] += done["cpu_seconds"]
                bar.update(1)
        else:
            context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
            with context.Pool(workers, initializer=_init_worker, maxtasksperchild=200) as pool:
                for done in pool.imap_unordered(_extract_star, jobs, chunksize=4):
                    counts["extracted"] += 1
                    counts["skipped"] += bool(done["skip"])
                    counts["extract_cpu_seconds"] += done["cpu_seconds"]
                    bar.update(1)
    finally:
        bar.close()
    return keys, counts


def note_hashes(pieces: dict[str, list[Piece]], keys: dict[str, str], cache_dir: Path) -> dict[str, str]:
    hashes = {}
    for corpus_pieces in pieces.values():
        for piece in corpus_pieces:
            if piece.note_hash:
                hashes[piece.name] = piece.note_hash
                continue
            path = cache_path(cache_dir, keys[piece.name])
            if path.is_file():
                with np.load(path, allow_pickle=False) as z:
                    hashes[piece.name] = str(z["note_hash"])
    return hashes


def build(
    config: BuildConfig,
    out: Path,
    *,
    workers: int = 2,
    overwrite: bool = False,
    timeout_s: float = 300.0,
    progress: bool = True,
    cache_dir: Path | None = None,
    shard: tuple[int, int] | None = None,
    cached_only: bool = False,
) -> dict:
    """Build (or resume) the dataset in ``out``; returns the manifest.

    Two steps: every file is extracted into its per-file cache entry (``cache_dir``, default
    ``out/cache``; only missing entries are extracted), then the files are deduplicated by note content,
    split by song and written as shards from the cache (a shard whose files and labels did not change
    is kept). With ``shard=(i, n)`` only the first step runs, for every n-th file: a cluster job array
    fills one cache, and ``build`` without ``shard`` (the merge) writes the shards. With ``cached_only``
    nothing is extracted: the shards hold the files already in the cache (a partial dataset while a
    build is running; the splits are those of the whole file list, so its held-out songs stay held out).
    """
    began = time.perf_counter()
    out = Path(out)
    cache_dir = Path(cache_dir) if cache_dir is not None else out / "cache"
    pieces = scan_all(config)
    _prepare_out_dir(out, config, overwrite)
    extract_began = time.perf_counter()
    keys, counts = extract_all(
        pieces,
        config,
        cache_dir,
        workers=workers,
        timeout_s=timeout_s,
        progress=progress,
        shard=shard,
        cached_only=cached_only,
    )
    counts["extract_seconds"] = round(time.perf_counter() - extract_began, 1)
    if shard is not None:
        seconds = round(time.perf_counter() - began, 1)
        report = {"shard": f"{shard[0]}/{shard[1]}", **counts, "seconds": seconds}
        (out / f"shard-{shard[0]}-of-{shard[1]}.json").write_text(json.dumps(report, indent=2))
        return report
    kept, dropped = deduplicate(pieces, note_hashes(pieces, keys, cache_dir))
    splits = assign_splits(
        kept, seed=config.seed, val_fraction=config.val_fraction, test_fraction=config.test_fraction
    )
    (out / SPLITS_FILE).write_text(
        json.dumps(
            {c: {s: sorted(k for k, v in m.items() if v == s) for s in SPLITS} for c, m in splits.items()},
            indent=1,
        )
    )
    chunks = make_chunks(kept, splits, config.chunk_size, keys)
    todo = [c for c in chunks if not _chunk_is_current(out, c)]
    _remove_stale_shards(out, chunks)
    log.info("%d chunks, %d to write; files: %s", len(chunks), len(todo), counts)
    _run_chunks(todo, out, config, cache_dir, workers, progress)
    manifest = summarise(out, config, kept, time.perf_counter() - began, dropped, chunks)
    manifest["files_extracted"] = counts["extracted"]
    manifest["files_from_cache"] = counts["cached"]
    if cached_only:
        manifest["files_not_in_cache"] = counts["missing"]
    manifest["extract_seconds"] = counts["extract_seconds"]
    manifest["extract_cpu_seconds"] = round(counts["extract_cpu_seconds"], 1)
    manifest["scan_seconds"] = round(extract_began - began, 1)
    previous = out / MANIFEST
    if previous.is_file():  # a resumed build: report the time of all runs
        old = json.loads(previous.read_text())
        if old.get("config") == manifest["config"] and (todo or counts["extracted"]):
            manifest["build_seconds"] = round(manifest["build_seconds"] + old.get("build_seconds", 0.0), 1)
        elif old.get("config") == manifest["config"]:
            manifest["build_seconds"] = old.get("build_seconds", manifest["build_seconds"])
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _chunk_is_current(out: Path, chunk: Chunk) -> bool:
    shard, stats = out / f"{chunk.name}.npz", out / f"{chunk.name}.json"
    if not (shard.is_file() and stats.is_file()):
        return False
    try:
        return json.loads(stats.read_text()).get("digest") == chunk.digest()
    except (OSError, ValueError):
        return False


def _remove_stale_shards(out: Path, chunks: Sequence[Chunk]) -> None:
    """Shards beyond the current chunk list (the file list shrank) would be read as data: remove them."""
    names = {c.name for c in chunks}
    for split in SPLITS:
        for path in (out / split).glob("*.npz") if (out / split).is_dir() else ():
            if f"{split}/{path.stem}" not in names and not path.stem.endswith(".tmp"):
                path.unlink()
                path.with_suffix(".json").unlink(missing_ok=True)


def preflight() -> None:
    """Extract and label a tiny generated piece in this process, so that a broken installation (missing
    calibration file, import error) stops the build at once instead of skipping every file."""
    import pretty_midi

    from e2m_live.analysis import describe_segment
    from e2m_live.description.extract import extract

    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    midi.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    piano = pretty_midi.Instrument(program=0)
    for i in range(16):
        piano.notes.append(pretty_midi.Note(80, 60 + (i % 5), i * 0.5, i * 0.5 + 0.4))
    midi.instruments.append(piano)
    extraction = extract(midi)
    if not extraction.description_bars():
        raise RuntimeError("preflight: extraction returned no bars for a generated piece")
    describe_segment(midi, start=0.0, end=4.0)


def _run_chunks(
    todo: Sequence[Chunk], out: Path, config: BuildConfig, cache_dir: Path, workers: int, progress: bool
) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="shard", disable=not progress or not todo, desc="shards")
    jobs = [(c, out, config, cache_dir) for c in todo]
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                _build_chunk_star(job)
                bar.update(1)
        else:
            context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
            with context.Pool(workers, initializer=_init_worker, maxtasksperchild=50) as pool:
                for _ in pool.imap_unordered(_build_chunk_star, jobs):
                    bar.update(1)
    finally:
        bar.close()


def relabel(out: Path, calibration: Path | None = None) -> int:
    """Recompute every estimated feature from the stored descriptors with the installed calibration
    (after ``training.data.calibrate_features`` changed it) or the one at ``calibration``; returns the number
    of segments."""
    from training.data.dataset import FEATURE_SOURCES, estimate_from_descriptors

    out = Path(out)
    manifest_path = out / MANIFEST
    if not manifest_path.is_file():
        raise ValueError(f"no dataset in {out}")
    total = 0
    for shard in sorted(out.glob("*/*.npz")):
        with np.load(shard, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        estimated = estimate_from_descriptors(arrays["seg_descriptors"], calibration)
        use = arrays["seg_features_source"] == FEATURE_SOURCES.index("estimated")
        arrays["seg_features"][use] = estimated[use]
        partial = np.flatnonzero(arrays["seg_features_source"] == FEATURE_SOURCES.index("spotify_partial"))
        kept = [i for i, n in enumerate(_feature_order()) if n not in ("valence", "energy", "tempo")]
        arrays["seg_features"][np.ix_(partial, kept)] = estimated[np.ix_(partial, kept)]
        arrays["seg_features_estimated"] = estimated
        tmp = shard.with_name(shard.stem + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, shard)
        total += len(estimated)
    manifest = json.loads(manifest_path.read_text())
    manifest["features_calibrated"] = True
    manifest["calibration"] = str(calibration) if calibration is not None else "installed"
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return total


# --- report and command line ----------------------------------------------------------------------


def format_report(manifest: dict) -> str:
    """A plain table of songs, files, segments and tokens per corpus and split."""
    lines = [
        f"{'corpus':<20} {'split':<5} {'songs':>6} {'files':>6} {'segments':>9} {'bars':>8} "
        f"{'REMI tok':>10} {'desc tok':>9} {'skipped':>7}"
    ]
    for corpus, info in manifest["corpora"].items():
        for split, c in info["splits"].items():
            lines.append(
                f"{corpus:<20} {split:<5} {c.get('songs', 0):>6} {c.get('files_used', 0):>6} "
                f"{c.get('segments', 0):>9} {c.get('bars', 0):>8} {c.get('remi_tokens', 0):>10} "
                f"{c.get('description_tokens', 0):>9} {c.get('files', 0) - c.get('files_used', 0):>7}"
            )
        if "share_segments_with_drums" in info:
            lines.append(
                f"{'':<20} files read {info['files_found']}, segments with drums "
                f"{100 * info['share_segments_with_drums']:.1f} %, instruments per segment "
                f"{info['instruments_per_segment']:.2f}, single-instrument segments "
                f"{100 * info['share_segments_single_instrument']:.1f} %"
            )
        if info["skipped"]:
            lines.append(f"{'':<20} skipped: {info['skipped']}")
    for split, c in manifest["totals"].items():
        lines.append(
            f"{'total':<20} {split:<5} {c.get('songs', 0):>6} {c.get('files_used', 0):>6} "
            f"{c.get('segments', 0):>9} {c.get('bars', 0):>8} {c.get('remi_tokens', 0):>10} "
            f"{c.get('description_tokens', 0):>9} {c.get('files', 0) - c.get('files_used', 0):>7}"
        )
    lines.append(f"build time {manifest['build_seconds']} s (chunk work {manifest['chunk_seconds']} s)")
    if "files_extracted" in manifest:
        lines.append(
            f"files extracted {manifest['files_extracted']} ({manifest['extract_seconds']} s wall, "
            f"{manifest['extract_cpu_seconds']} s CPU), from the cache {manifest['files_from_cache']}"
        )
    return "\n".join(lines)


def _count(value: int) -> str:
    return f"{value:,}"


def markdown_report(manifest: dict) -> str:
    """The per-corpus table of ``docs/dataset.md``: files read, used, skipped with reasons, songs,
    segments, tokens, share with drums, instruments per segment, single-instrument share, Spotify."""
    lines = [
        "| corpus | licence | files | used | skipped (reasons) | songs | segments | REMI+ tokens "
        "| description tokens | with drums | instruments / segment | single-instrument | Spotify files |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total: Counter = Counter()
    for corpus, info in manifest["corpora"].items():
        counts: Counter = Counter()
        for split_counts in info["splits"].values():
            counts.update(split_counts)
        reasons = sorted(info["skipped"].items(), key=lambda kv: -kv[1])
        skipped = "; ".join(f"{n:,} {why}" for why, n in reasons)
        lines.append(
            f"| {corpus} | {info['licence']} | {_count(info['files_found'])} "
            f"| {_count(counts['files_used'])} "
            f"| {skipped or '0'} | {_count(counts['songs'])} | {_count(counts['segments'])} "
            f"| {_count(counts['remi_tokens'])} | {_count(counts['description_tokens'])} "
            f"| {100 * info['share_segments_with_drums']:.1f} % | {info['instruments_per_segment']:.2f} "
            f"| {100 * info['share_segments_single_instrument']:.1f} % | {_count(info['files_spotify'])} |"
        )
        total.update(counts)
        total["files_found"] += info["files_found"]
        total["files_spotify"] += info["files_spotify"]
        segments = counts["segments"]
        total["drums"] += round(info["share_segments_with_drums"] * segments)
        total["single"] += round(info["share_segments_single_instrument"] * segments)
        total["instruments"] += info["instruments_per_segment"] * segments
    n = max(total["segments"], 1)
    lines.append(
        f"| **total** | | {_count(total['files_found'])} | {_count(total['files_used'])} | "
        f"| {_count(total['songs'])} | {_count(total['segments'])} | {_count(total['remi_tokens'])} "
        f"| {_count(total['description_tokens'])} | {100 * total['drums'] / n:.1f} % "
        f"| {total['instruments'] / n:.2f} | {100 * total['single'] / n:.1f} % "
        f"| {_count(total['files_spotify'])} |"
    )
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.build", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets", type=Path, default=None, help="datasets root (default: shared/datasets)"
    )
    parser.add_argument("--corpora", nargs="+", default=None, help="corpus names (default: all present)")
    parser.add_argument(
        "--spotify-table", type=Path, default=None, help="table from training.data.match_spotify"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--segment-bars", type=int, default=12)
    parser.add_argument("--stride", type=int, default=4, help="bars between segment starts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val", type=float, default=0.1, help="fraction of songs in val")
    parser.add_argument("--test", type=float, default=0.05, help="fraction of songs in test")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=16, help="files per shard")
    parser.add_argument("--limit-per-corpus", type=int, default=None, help="first N files of each corpus")
    parser.add_argument(
        "--sample-per-corpus", type=int, default=None, help="a seeded random sample of N files per corpus"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per file")
    parser.add_argument("--overwrite", action="store_true", help="discard any build already in --out")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--relabel", action="store_true", help="only recompute estimated features of the dataset in --out"
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="--relabel with this calibration JSON",
    )
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="extract nothing: assemble the files already in the cache (a partial build)",
    )
    parser.add_argument("--cache", type=Path, default=None, help="per-file cache folder (default: OUT/cache)")
    parser.add_argument(
        "--shard", default=None, help="i/n: only extract every n-th file into the cache (a job array task)"
    )
    parser.add_argument(
        "--merge", action="store_true", help="write the shards from the cache filled by --shard tasks"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="only print the per-corpus table of the build in --out"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    argv = list(argv) if argv is not None else sys.argv[1:]
    if argv[:1] == ["merge"]:  # `python -m training.data.build merge ...`
        argv = ["--merge", *argv[1:]]
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if args.markdown:
        try:
            print(markdown_report(json.loads((args.out / MANIFEST).read_text())))
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: no readable build in {args.out}: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.relabel:
        try:
            count = relabel(args.out, args.calibration)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"relabelled {count} segments in {args.out}")
        return 0
    if args.segment_bars < 1 or args.stride < 1 or args.chunk_size < 1:
        print("error: --segment-bars, --stride and --chunk-size must be positive", file=sys.stderr)
        return 2
    datasets = args.datasets or default_datasets_root()
    if not datasets.is_dir():
        print(f"error: datasets root not found: {datasets}", file=sys.stderr)
        return 2
    config = BuildConfig(
        datasets_root=str(datasets.resolve()),
        corpora=tuple(args.corpora) if args.corpora else _present_corpora(datasets),
        spotify_table=str(args.spotify_table.resolve()) if args.spotify_table else None,
        segment_bars=args.segment_bars,
        stride=args.stride,
        seed=args.seed,
        val_fraction=args.val,
        test_fraction=args.test,
        chunk_size=args.chunk_size,
        limit_per_corpus=args.limit_per_corpus,
        sample_per_corpus=args.sample_per_corpus,
    )
    try:
        shard = parse_shard(args.shard) if args.shard else None
        if shard is not None and args.merge:
            raise ValueError("--shard and --merge exclude each other")
        manifest = build(
            config,
            args.out,
            workers=args.workers,
            overwrite=args.overwrite and shard is None,
            timeout_s=args.timeout,
            progress=not args.no_progress,
            cache_dir=args.cache,
            shard=shard,
            cached_only=args.cached_only,
        )
    except (CorpusError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ImportError, OSError, RuntimeError) as exc:  # from the preflight: the installation is broken
        print(f"error: cannot extract or label music here: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if shard is not None:
        print(json.dumps(manifest))
        return 0
    print(format_report(manifest))
    print(f"wrote {args.out / MANIFEST}")
    return 0


def _present_corpora(datasets: Path) -> tuple[str, ...]:
    folders = [name for name, corpus in CORPORA.items() if (datasets / corpus.folder).is_dir()]
    return (*folders, *present_multi(datasets))


if __name__ == "__main__":
    raise SystemExit(main())
