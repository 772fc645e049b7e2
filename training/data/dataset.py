"""Reader of the training set written by ``python -m training.data.build``.

A dataset folder holds ``manifest.json`` and one folder per split (``train``, ``val``, ``test``) of
``.npz`` shards. A shard stores each MIDI file once (its REMI+ and description token ids, bar by bar)
and its segments as ``(file, first bar)`` with the segment's features, so overlapping segments cost
no extra space. :func:`load_split` returns a lazy sequence of :class:`Segment`.

Transposition is applied on the fly (:func:`transpose`), not stored: it shifts the non-drum
``Pitch_n`` and every chord root of both sequences, recomputes each bar's ``Mean Pitch`` bin from
the shifted pitches exactly as FIGARO does (drum notes count with their drum key number, as in
FIGARO), and shifts the features' key.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import overload

import numpy as np

from e2m_live.description.vocab import (
    BAR_KEY,
    CHORD_KEY,
    MEAN_PITCH_BINS,
    MEAN_PITCH_KEY,
    PITCH_CLASSES,
    PITCH_KEY,
    DescriptionVocab,
    RemiVocab,
)

SPLITS = ("train", "val", "test")
#: ``features_source`` values; the shard stores the index. ``spotify_partial``: valence, energy and tempo
#: are Spotify's (the Lakh/MSD table of ``training.data.label_rpbot``), the other seven estimated.
FEATURE_SOURCES = ("estimated", "spotify", "spotify_partial")
#: Index of the key in the feature vector (``e2m_live.features.FEATURE_ORDER``).
KEY_INDEX = 6
#: Shifts that cover all twelve keys with the smallest pitch change.
TRANSPOSITIONS = tuple(range(-5, 7))

MANIFEST = "manifest.json"
SHARD_FORMAT = 1


class DatasetError(ValueError):
    """The dataset folder is missing, incomplete or of another format."""


class TransposeError(ValueError):
    """A transposition would push a pitch outside 0..127."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One training example: a run of bars with its description, REMI+ tokens and features.

    ``features`` are in ``e2m_live.features.FEATURE_ORDER`` and Spotify's units (not normalised);
    ``features_source`` is ``"spotify"``, ``"spotify_partial"`` (valence, energy, tempo only) or
    ``"estimated"``; ``estimated_features`` are always the
    ones estimated from the MIDI (equal to ``features`` unless Spotify matched). ``emotion`` is the
    corpus' own (valence, arousal) label in -1..1, NaN where the corpus has none. ``descriptors`` are
    the raw ``e2m_live.analysis.describe_segment`` values (``DESCRIPTOR_NAMES`` order) the estimate
    was computed from. Bar tokens keep
    the bar number in the file (``Bar_1`` is its first bar), as FIGARO's extraction writes them.
    """

    description_ids: np.ndarray
    remi_ids: np.ndarray
    features: np.ndarray
    estimated_features: np.ndarray
    features_source: str
    song_id: str
    corpus: str
    file: str
    start_bar: int
    emotion: np.ndarray
    descriptors: np.ndarray | None = None
    transposition: int = 0

    def description_tokens(self) -> list[str]:
        return _desc_vocab().decode(self.description_ids)

    def remi_tokens(self) -> list[str]:
        return _remi_vocab().decode(self.remi_ids)

    def description_bar_ids(self) -> list[np.ndarray]:
        """Description ids split at each ``Bar_N`` (each part starts with its bar token)."""
        return _split_bars(self.description_ids, _desc_tables().is_bar)

    def remi_bar_ids(self) -> list[np.ndarray]:
        """REMI+ ids split at each ``Bar_N``."""
        return _split_bars(self.remi_ids, _remi_tables().is_bar)

    def description_bars(self) -> list[list[str]]:
        vocab = _desc_vocab()
        return [vocab.decode(bar) for bar in self.description_bar_ids()]

    def remi_bars(self) -> list[list[str]]:
        vocab = _remi_vocab()
        return [vocab.decode(bar) for bar in self.remi_bar_ids()]

    @property
    def n_bars(self) -> int:
        return int(np.count_nonzero(_desc_tables().is_bar[self.description_ids]))


def _split_bars(ids: np.ndarray, is_bar: np.ndarray) -> list[np.ndarray]:
    starts = np.flatnonzero(is_bar[ids])
    if len(starts) == 0:
        return [ids] if len(ids) else []
    bounds = [*starts.tolist(), len(ids)]
    return [ids[a:b] for a, b in itertools.pairwise(bounds)]


# --- transposition ------------------------------------------------------------------------------


@cache
def _remi_vocab() -> RemiVocab:
    return RemiVocab()


@cache
def _desc_vocab() -> DescriptionVocab:
    return DescriptionVocab()


@dataclass(frozen=True)
class _Tables:
    """Per-id lookups for one vocabulary."""

    is_bar: np.ndarray  # bool
    pitch: np.ndarray  # non-drum MIDI pitch, -1 otherwise
    drum_pitch: np.ndarray  # drum key number, -1 otherwise
    chord_root: np.ndarray  # pitch class of a chord token's root, -1 otherwise
    chord_id: dict[tuple[int, str], int]  # (root, quality) -> id
    pitch_id: np.ndarray  # MIDI pitch -> id of Pitch_n (-1 where absent)
    mean_pitch_id: np.ndarray  # bin -> id of Mean Pitch_n (-1 where absent)
    is_mean_pitch: np.ndarray  # bool


def _build_tables(itos: list[str]) -> _Tables:
    n = len(itos)
    is_bar = np.zeros(n, bool)
    pitch = np.full(n, -1, np.int64)
    drum = np.full(n, -1, np.int64)
    root = np.full(n, -1, np.int64)
    chord_id: dict[tuple[int, str], int] = {}
    pitch_id = np.full(128, -1, np.int64)
    mean_pitch_id = np.full(len(MEAN_PITCH_BINS), -1, np.int64)
    is_mean_pitch = np.zeros(n, bool)
    for i, tok in enumerate(itos):
        key, _, value = tok.partition("_")
        if key == BAR_KEY:
            is_bar[i] = True
        elif key == PITCH_KEY:
            if value.startswith("drum_"):
                drum[i] = int(value[5:])
            else:
                pitch[i] = int(value)
                pitch_id[int(value)] = i
        elif key == CHORD_KEY:
            name, _, quality = value.partition(":")
            if name in PITCH_CLASSES:
                root[i] = PITCH_CLASSES.index(name)
                chord_id[(root[i], quality)] = i
        elif key == MEAN_PITCH_KEY:
            is_mean_pitch[i] = True
            mean_pitch_id[int(value)] = i
    return _Tables(is_bar, pitch, drum, root, chord_id, pitch_id, mean_pitch_id, is_mean_pitch)


@cache
def _remi_tables() -> _Tables:
    return _build_tables(_remi_vocab().itos)


@cache
def _desc_tables() -> _Tables:
    return _build_tables(_desc_vocab().itos)


@cache
def _shift_map(vocab: str, k: int) -> np.ndarray:
    """id -> id after transposing by ``k`` semitones; -1 for a pitch pushed out of 0..127."""
    tables = _remi_tables() if vocab == "remi" else _desc_tables()
    itos = (_remi_vocab() if vocab == "remi" else _desc_vocab()).itos
    mapping = np.arange(len(itos), dtype=np.int64)
    for i in np.flatnonzero(tables.pitch >= 0):
        shifted = tables.pitch[i] + k
        mapping[i] = tables.pitch_id[shifted] if 0 <= shifted < 128 else -1
    for i in np.flatnonzero(tables.chord_root >= 0):
        quality = itos[i].partition(":")[2]
        mapping[i] = tables.chord_id[((tables.chord_root[i] + k) % 12, quality)]
    return mapping


def mean_pitch_bin(pitches: Sequence[int] | np.ndarray) -> int:
    """FIGARO's ``Mean Pitch`` bin of a bar's note pitches (bin 0 for an empty bar, as FIGARO's NaN gives)."""
    pitches = np.asarray(pitches)
    if len(pitches) == 0:
        return 0
    return int(np.argmin(np.abs(MEAN_PITCH_BINS - pitches.mean())))


def transpose_ids(description_ids: np.ndarray, remi_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Transpose aligned description and REMI+ id sequences (same bars) by ``k`` semitones."""
    if k == 0:
        return description_ids, remi_ids
    remi_map, desc_map = _shift_map("remi", k), _shift_map("description", k)
    new_remi = remi_map[remi_ids]
    if np.any(new_remi < 0):
        raise TransposeError(f"transposing by {k} pushes a pitch outside 0..127")
    new_desc = desc_map[description_ids]

    remi_tables, desc_tables = _remi_tables(), _desc_tables()
    remi_bars = _split_bars(new_remi, remi_tables.is_bar)
    desc_starts = np.flatnonzero(desc_tables.is_bar[new_desc])
    if len(remi_bars) != len(desc_starts):
        raise TransposeError(f"{len(desc_starts)} description bars but {len(remi_bars)} REMI bars")
    desc_bounds = [*desc_starts.tolist(), len(new_desc)]
    for bar, start, end in zip(remi_bars, desc_bounds[:-1], desc_bounds[1:], strict=True):
        pitches = np.concatenate(
            [
                remi_tables.pitch[bar][remi_tables.pitch[bar] >= 0],
                remi_tables.drum_pitch[bar][remi_tables.drum_pitch[bar] >= 0],
            ]
        )
        where = start + np.flatnonzero(desc_tables.is_mean_pitch[new_desc[start:end]])
        new_desc[where] = desc_tables.mean_pitch_id[mean_pitch_bin(pitches)]
    return new_desc.astype(description_ids.dtype), new_remi.astype(remi_ids.dtype)


def transpose_features(features: np.ndarray, k: int) -> np.ndarray:
    """Shift the key feature by ``k`` (an unknown key, -1 as Spotify writes it, stays)."""
    out = np.array(features, dtype=np.float32, copy=True)
    if out[KEY_INDEX] >= 0:
        out[KEY_INDEX] = (round(float(out[KEY_INDEX])) + k) % 12
    return out


def transpose(segment: Segment, k: int) -> Segment:
    """The segment transposed by ``k`` semitones (raises :class:`TransposeError` out of range)."""
    desc, remi = transpose_ids(segment.description_ids, segment.remi_ids, k)
    return replace(
        segment,
        description_ids=desc,
        remi_ids=remi,
        features=transpose_features(segment.features, k),
        estimated_features=transpose_features(segment.estimated_features, k),
        transposition=segment.transposition + k,
    )


def transpositions(segment: Segment, shifts: Sequence[int] = TRANSPOSITIONS) -> Iterator[Segment]:
    """Every transposition of ``shifts`` that keeps all pitches in range."""
    for k in shifts:
        try:
            yield transpose(segment, k)
        except TransposeError:
            continue


# --- reading ------------------------------------------------------------------------------------


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path} not found: build the dataset with `python -m training.data.build`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != SHARD_FORMAT:
        raise DatasetError(f"{path}: format {manifest.get('format')!r}, this reader reads {SHARD_FORMAT}")
    return manifest


class SegmentList(Sequence[Segment]):
    """All segments of one split, held as flat arrays; :class:`Segment` objects are made on access.

    ``features``, ``features_source``, ``song_ids`` and ``corpora`` give every segment's labels at once.
    """

    def __init__(self, shards: Sequence[Path], corpora: Sequence[str] | None = None) -> None:
        remi, desc, remi_off, desc_off, piece_bars = [], [], [], [], []
        song, corpus, file, emotion = [], [], [], []
        seg_piece, seg_start, feats, est, source, descs = [], [], [], [], [], []
        n_tok_r = n_tok_d = n_bars = n_pieces = 0
        for shard in shards:
            with np.load(shard, allow_pickle=False) as z:
                remi.append(z["remi_ids"])
                desc.append(z["desc_ids"])
                remi_off.append(z["remi_bar_offsets"][:-1] + n_tok_r)
                desc_off.append(z["desc_bar_offsets"][:-1] + n_tok_d)
                piece_bars.append(z["piece_bar_offsets"][:-1] + n_bars)
                song.append(z["piece_song_id"])
                corpus.append(z["piece_corpus"])
                file.append(z["piece_file"])
                emotion.append(z["piece_emotion"])
                seg_piece.append(z["seg_piece"].astype(np.int64) + n_pieces)
                seg_start.append(z["seg_start_bar"])
                feats.append(z["seg_features"])
                est.append(z["seg_features_estimated"])
                source.append(z["seg_features_source"])
                descs.append(z["seg_descriptors"])
                n_tok_r += len(z["remi_ids"])
                n_tok_d += len(z["desc_ids"])
                n_bars += len(z["remi_bar_offsets"]) - 1
                n_pieces += len(z["piece_song_id"])

        def cat(parts: list[np.ndarray], dtype: object, shape: tuple[int, ...] = (0,)) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(shape, dtype)

        self._remi = cat(remi, np.int16)
        self._desc = cat(desc, np.int16)
        self._remi_off = np.append(cat(remi_off, np.int64), n_tok_r)
        self._desc_off = np.append(cat(desc_off, np.int64), n_tok_d)
        self._piece_bars = np.append(cat(piece_bars, np.int64), n_bars)
        self._song = cat(song, str)
        self._corpus = cat(corpus, str)
        self._file = cat(file, str)
        self._emotion = cat(emotion, np.float32, (0, 2))
        seg_piece_all = cat(seg_piece, np.int64)
        keep = np.ones(len(seg_piece_all), bool)
        if corpora is not None:
            keep = np.isin(self._corpus[seg_piece_all], list(corpora)) if len(seg_piece_all) else keep
        self._seg_piece = seg_piece_all[keep]
        self._seg_start = cat(seg_start, np.int32)[keep]
        self.features: np.ndarray = cat(feats, np.float32, (0, 10))[keep]
        self.estimated_features: np.ndarray = cat(est, np.float32, (0, 10))[keep]
        self._source = cat(source, np.uint8)[keep]
        n_desc = descs[0].shape[1] if descs else 0
        self.descriptors: np.ndarray = cat(descs, np.float32, (0, n_desc))[keep]
        self.segment_bars = 0
        _fill_missing_estimates(self.estimated_features, self.features, self._source, self.descriptors)

    @property
    def features_source(self) -> np.ndarray:
        """Per segment: ``"spotify"`` or ``"estimated"``."""
        return np.asarray(FEATURE_SOURCES)[self._source]

    @property
    def song_ids(self) -> np.ndarray:
        return self._song[self._seg_piece]

    @property
    def corpora(self) -> np.ndarray:
        return self._corpus[self._seg_piece]

    @property
    def start_bars(self) -> np.ndarray:
        """Per segment: its first bar within its file."""
        return self._seg_start

    @property
    def files(self) -> np.ndarray:
        """Per segment: the file it was cut from."""
        return self._file[self._seg_piece]

    @property
    def emotions(self) -> np.ndarray:
        """Per segment ``[n, 2]``: its file's corpus label (valence, arousal) in -1..1, NaN if none."""
        return self._emotion[self._seg_piece]

    def __len__(self) -> int:
        return len(self._seg_piece)

    @overload
    def __getitem__(self, index: int) -> Segment: ...
    @overload
    def __getitem__(self, index: slice) -> list[Segment]: ...
    def __getitem__(self, index: int | slice) -> Segment | list[Segment]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        piece = self._seg_piece[index]
        first = self._piece_bars[piece] + self._seg_start[index]
        last = first + self.segment_bars
        return Segment(
            description_ids=self._desc[self._desc_off[first] : self._desc_off[last]],
            remi_ids=self._remi[self._remi_off[first] : self._remi_off[last]],
            features=self.features[index],
            estimated_features=self.estimated_features[index],
            features_source=FEATURE_SOURCES[self._source[index]],
            song_id=str(self._song[piece]),
            corpus=str(self._corpus[piece]),
            file=str(self._file[piece]),
            start_bar=int(self._seg_start[index]),
            emotion=self._emotion[piece],
            descriptors=self.descriptors[index],
        )


def estimate_from_descriptors(descriptors: np.ndarray, path: Path | None = None) -> np.ndarray:
    """Estimated features (rows in ``FEATURE_ORDER``) from descriptor rows, with the installed calibration
    (or the one at ``path``)."""
    from e2m_live.analysis import feature_matrix, load_calibration

    try:
        calibration = load_calibration(str(path) if path is not None else None)
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(
            "features were not calibrated when the dataset was built and no calibration is available "
            f"now ({exc}); run `python -m training.data.calibrate_features`"
        ) from exc
    return feature_matrix(descriptors, calibration)


def _fill_missing_estimates(
    estimated: np.ndarray, features: np.ndarray, source: np.ndarray, descriptors: np.ndarray
) -> None:
    """Estimate in place the rows stored as NaN (built before a calibration existed)."""
    missing = np.flatnonzero(np.isnan(estimated).any(axis=1))
    if len(missing) == 0:
        return
    estimated[missing] = estimate_from_descriptors(descriptors[missing])
    use = missing[source[missing] == FEATURE_SOURCES.index("estimated")]
    features[use] = estimated[use]


def load_split(root: Path, split: str, *, corpora: Sequence[str] | None = None) -> SegmentList:
    """Segments of ``split`` (``train``, ``val`` or ``test``), optionally of some corpora only."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
    root = Path(root)
    manifest = read_manifest(root)
    shards = sorted((root / split).glob("*.npz"))
    segments = SegmentList(shards, corpora)
    segments.segment_bars = int(manifest["config"]["segment_bars"])
    return segments
