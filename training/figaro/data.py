"""Training windows for FIGARO and a compact packed copy of the dataset for remote training.

A window is built the way FIGARO's ``MidiDataset`` builds one: the segment's REMI+ ids wrapped in
``<bos>``/``<eos>``, a slice of ``context_size + 1`` tokens (inputs and next-token labels), bar ids
(count of ``Bar_*`` tokens so far, 0 for ``<bos>``/``<eos>``), position ids (the last ``Position_*``
value, 0 at a bar line) and the description from the bar of the window's first token on (with
``<bos>`` when the window starts at the beginning), ``context_size`` tokens at most.

This module imports only numpy (and torch for batches), so it runs on a bare GPU machine.
"""

from __future__ import annotations

import copy
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from e2m_live.description.vocab import BAR_KEY, INSTRUMENT_KEY, POSITION_KEY, DescriptionVocab, RemiVocab

PACK_FORMAT = "e2m-figaro-pack-1"


class SegmentLike(Protocol):
    """What training needs from a dataset segment (``training.data.dataset.Segment`` fits)."""

    description_ids: np.ndarray
    remi_ids: np.ndarray
    song_id: str


@dataclass(frozen=True, slots=True)
class PackedSegment:
    """A segment read back from a pack: ids, the song it belongs to and its corpus."""

    description_ids: np.ndarray
    remi_ids: np.ndarray
    song_id: str
    corpus: str = ""


class TokenTables:
    """Id-level facts about both vocabularies (built once)."""

    def __init__(self) -> None:
        remi, desc = RemiVocab(), DescriptionVocab()
        self.pad, self.bos, self.eos = remi.pad_id, remi.bos_id, remi.eos_id
        self.desc_pad, self.desc_bos, self.desc_eos = desc.pad_id, desc.bos_id, desc.eos_id
        self.remi_is_bar = np.zeros(len(remi), dtype=bool)
        self.remi_is_bar[remi.ids_with_prefix(BAR_KEY)] = True
        self.desc_is_bar = np.zeros(len(desc), dtype=bool)
        self.desc_is_bar[desc.ids_with_prefix(BAR_KEY)] = True
        # position value of each Position_* id, -1 elsewhere
        self.position_value = np.full(len(remi), -1, dtype=np.int64)
        for i, tok in enumerate(remi.itos):
            if tok.startswith(POSITION_KEY + "_"):
                self.position_value[i] = int(tok.split("_")[-1])
        self.remi_size, self.desc_size = len(remi), len(desc)
        self.remi_bar0, self.desc_bar0 = remi[f"{BAR_KEY}_0"], desc[f"{BAR_KEY}_0"]  # Bar_n = Bar_0 + n


def renumber_bars(ids: np.ndarray, is_bar: np.ndarray, bar0: int) -> np.ndarray:
    """A copy of ``ids`` whose ``Bar_*`` tokens count 1, 2, 3, ... (as the live decoder numbers them)."""
    out = ids.copy()
    flags = is_bar[ids]
    out[flags] = bar0 + np.minimum(np.arange(1, int(flags.sum()) + 1), 511)
    return out


@dataclass(frozen=True, slots=True)
class Window:
    """One training example (numpy, unpadded)."""

    input_ids: np.ndarray
    labels: np.ndarray
    bar_ids: np.ndarray
    position_ids: np.ndarray
    desc_ids: np.ndarray
    desc_bar_ids: np.ndarray


class SegmentWindows:
    """Precomputed sequences of one segment, from which windows are cut.

    With ``renumber`` (the default) the segment's bars are numbered from 1, as the live decoder
    numbers the bars it generates, instead of keeping their number in the source file."""

    def __init__(self, segment: SegmentLike, tables: TokenTables, renumber: bool = True) -> None:
        remi = np.asarray(segment.remi_ids, dtype=np.int64)
        desc = np.asarray(segment.description_ids, dtype=np.int64)
        # Some builders keep <bos>/<eos> in the stored ids: strip, then wrap consistently.
        remi = remi[(remi != tables.bos) & (remi != tables.eos) & (remi != tables.pad)]
        desc = desc[(desc != tables.desc_bos) & (desc != tables.desc_eos) & (desc != tables.desc_pad)]
        if remi.size == 0 or desc.size == 0:
            raise ValueError(f"segment of song {segment.song_id!r} is empty")
        if (
            remi.max() >= tables.remi_size
            or desc.max() >= tables.desc_size
            or min(remi.min(), desc.min()) < 0
        ):
            raise ValueError(f"segment of song {segment.song_id!r} has ids outside the vocabularies")
        if renumber:
            remi = renumber_bars(remi, tables.remi_is_bar, tables.remi_bar0)
            desc = renumber_bars(desc, tables.desc_is_bar, tables.desc_bar0)
        self.song_id = str(segment.song_id)
        self.tokens = np.concatenate([[tables.bos], remi, [tables.eos]])
        bars = np.cumsum(tables.remi_is_bar[remi])
        self.bar_ids = np.concatenate([[0], bars, [0]])
        self.position_ids = np.concatenate([[0], _running_positions(remi, tables), [0]])
        desc_bar_flags = tables.desc_is_bar[desc]
        self.desc_bar_starts = np.flatnonzero(desc_bar_flags)
        self.desc = desc
        self.desc_bar_ids = np.cumsum(desc_bar_flags)
        self.tables = tables

    def __len__(self) -> int:
        return len(self.tokens)

    def transposed(self, k: int) -> SegmentWindows:
        """The same segment transposed by ``k`` semitones (pitches, chords, mean-pitch bins), or
        ``self`` where the shift would leave the MIDI range or the bars do not line up."""
        from training.data.dataset import transpose_ids  # numpy-only helper of the dataset reader

        if k == 0:
            return self
        try:
            desc, remi = transpose_ids(self.desc, self.tokens[1:-1], k)
        except ValueError:
            return self
        clone = copy.copy(self)
        clone.desc = desc
        clone.tokens = np.concatenate([self.tokens[:1], remi, self.tokens[-1:]])
        return clone

    def n_starts(self, context_size: int) -> int:
        """How many distinct window starts there are."""
        return max(1, len(self.tokens) - context_size)

    def window(self, start: int, context_size: int) -> Window:
        """The window whose first input token is ``tokens[start]``."""
        end = start + context_size + 1
        x = self.tokens[start:end]
        bar_ids = self.bar_ids[start:end][:-1]
        min_bar = int(self.bar_ids[start])
        t = self.tables
        if min_bar == 0:
            desc = np.concatenate([[t.desc_bos], self.desc, [t.desc_eos]])
            desc_bar_ids = np.concatenate([[0], self.desc_bar_ids, [0]])
        else:
            first = self.desc_bar_starts[min(min_bar, len(self.desc_bar_starts)) - 1]
            desc = np.concatenate([self.desc[first:], [t.desc_eos]])
            desc_bar_ids = np.concatenate([self.desc_bar_ids[first:], [0]])
        return Window(
            input_ids=x[:-1],
            labels=x[1:],
            bar_ids=bar_ids,
            position_ids=self.position_ids[start:end][:-1],
            desc_ids=desc[:context_size],
            desc_bar_ids=desc_bar_ids[:context_size],
        )

    def tiling_starts(self, context_size: int, max_windows: int | None = None) -> list[int]:
        """Starts of non-overlapping windows covering the segment (for validation)."""
        starts = list(range(0, self.n_starts(context_size), context_size))
        return starts[:max_windows] if max_windows else starts


def non_overlapping(segments: Sequence[SegmentLike]) -> list[SegmentLike]:
    """Keep, per file, segments whose bars do not overlap (the dataset stores overlapping ones).

    Segments without ``file``/``start_bar`` (e.g. read from a pack) are all kept.
    """
    kept: list[SegmentLike] = []
    last_end: dict[str, int] = {}
    keyed = []
    for i, seg in enumerate(segments):
        file, start = getattr(seg, "file", None), getattr(seg, "start_bar", None)
        if file is None or start is None:
            kept.append(seg)
        else:
            keyed.append((str(file), int(start), i, seg))
    for file, start, _, seg in sorted(keyed, key=lambda t: (t[0], t[1], t[2])):
        if start >= last_end.get(file, -1):
            kept.append(seg)
            n_bars = int(getattr(seg, "n_bars", 0)) or 1
            last_end[file] = start + n_bars
    return kept


def _running_positions(remi: np.ndarray, tables: TokenTables) -> np.ndarray:
    """Position value in force at each token (a ``Bar_*`` token resets it to 0)."""
    values = tables.position_value[remi].copy()
    values[tables.remi_is_bar[remi]] = 0
    known = values >= 0
    idx = np.where(known, np.arange(len(values)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    out[out < 0] = 0  # before the first position or bar line
    return out


def collate(windows: Sequence[Window], pad_id: int = 0, desc_pad_id: int = 0) -> dict[str, np.ndarray]:
    """Pad windows into a batch of arrays (labels padded with ``pad_id``, ignored by the loss)."""
    n = len(windows)
    length = max(len(w.input_ids) for w in windows)
    desc_length = max(len(w.desc_ids) for w in windows)
    batch = {
        "remi_ids": np.full((n, length), pad_id, dtype=np.int64),
        "labels": np.full((n, length), pad_id, dtype=np.int64),
        "remi_bar_ids": np.zeros((n, length), dtype=np.int64),
        "remi_position_ids": np.zeros((n, length), dtype=np.int64),
        "desc_ids": np.full((n, desc_length), desc_pad_id, dtype=np.int64),
        "desc_bar_ids": np.zeros((n, desc_length), dtype=np.int64),
    }
    for i, w in enumerate(windows):
        k, d = len(w.input_ids), len(w.desc_ids)
        batch["remi_ids"][i, :k] = w.input_ids
        batch["labels"][i, :k] = w.labels
        batch["remi_bar_ids"][i, :k] = w.bar_ids
        batch["remi_position_ids"][i, :k] = w.position_ids
        batch["desc_ids"][i, :d] = w.desc_ids
        batch["desc_bar_ids"][i, :d] = w.desc_bar_ids
    return batch


# --- packs: one compressed .npz holding both splits --------------------------------------------


def save_pack(path: str | Path, splits: dict[str, Sequence[SegmentLike]]) -> Path:
    """Write segments of several splits into one compressed ``.npz`` (uint16 ids)."""
    arrays: dict[str, np.ndarray] = {}
    # The 128 General MIDI names, so a machine without pretty_midi can stand in for it (device_train.sh).
    names = [t.split("_", 1)[1] for t in RemiVocab().itos if t.startswith(INSTRUMENT_KEY + "_")][:128]
    meta: dict[str, object] = {"format": PACK_FORMAT, "splits": {}, "instrument_names": names}
    for split, segments in splits.items():
        remi = [np.asarray(s.remi_ids, dtype=np.uint16) for s in segments]
        desc = [np.asarray(s.description_ids, dtype=np.uint16) for s in segments]
        arrays[f"{split}.remi"] = np.concatenate(remi) if remi else np.zeros(0, np.uint16)
        arrays[f"{split}.desc"] = np.concatenate(desc) if desc else np.zeros(0, np.uint16)
        arrays[f"{split}.remi_offsets"] = np.cumsum([0] + [len(r) for r in remi]).astype(np.int64)
        arrays[f"{split}.desc_offsets"] = np.cumsum([0] + [len(d) for d in desc]).astype(np.int64)
        meta["splits"][split] = {  # type: ignore[index]
            "song_ids": [str(s.song_id) for s in segments],
            "corpora": [str(getattr(s, "corpus", "")) for s in segments],
        }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_pack(path: str | Path, split: str) -> list[PackedSegment]:
    """Read one split of a pack written by :func:`save_pack`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != PACK_FORMAT:
                raise ValueError("not a FIGARO training pack")
            if split not in meta["splits"]:
                raise LookupError(f"{path} has no split {split!r} (has {sorted(meta['splits'])})")
            remi, desc = data[f"{split}.remi"], data[f"{split}.desc"]
            r_off, d_off = data[f"{split}.remi_offsets"], data[f"{split}.desc_offsets"]
    except LookupError as err:
        if isinstance(err, KeyError):
            raise ValueError(f"cannot read pack {path}: missing {err}") from err
        raise ValueError(str(err)) from err
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read pack {path}: {err}") from err
    info = meta["splits"][split]
    return [
        PackedSegment(
            description_ids=desc[d_off[i] : d_off[i + 1]].astype(np.int64),
            remi_ids=remi[r_off[i] : r_off[i + 1]].astype(np.int64),
            song_id=song,
            corpus=corpus,
        )
        for i, (song, corpus) in enumerate(zip(info["song_ids"], info["corpora"], strict=True))
    ]
