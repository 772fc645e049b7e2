"""`e2m-live decode`: decode a given FIGARO description -> MIDI (and WAV).

    e2m-live plan --mood sad --seed 7 --json > sad.json
    e2m-live decode sad.json --seed 7 -o sad.mid            # the music `generate --mood sad --seed 7` makes
    e2m-live describe song.mid --json > song.json           # edit its instruments or chords, then
    e2m-live decode song.json -o new.mid --wav new.wav
    e2m-live decode song.mid --bars 9:16 --instruments piano,bass,drums -o cover.mid

The description is the JSON of ``plan --json`` or ``describe --json`` (a hand-edited copy too: the
``bars`` records are decoded, their ``tokens`` are only compared), a JSON list of tokens, or a MIDI
file whose description is extracted on the fly. Bad descriptions are rejected with the grammar's
message (token, index, bar), as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from e2m_live.commands.errors import UsageError
from e2m_live.commands.generate import add_decoder_arguments, add_output_arguments, check_decoding_arguments

# e2m_live.pipeline sets OpenMP's wait policy: it must be imported before anything loads OpenMP.
from e2m_live.pipeline import DecodingOptions, Pipeline, PipelineError, section_duration

# isort: split
from e2m_live.arrangement import DEFAULT_KEY_LOCK, Arrangement, ArrangementError, instrument_name
from e2m_live.commands.feature_flags import add_feature_arguments, arrangement_from_args, features_from_args
from e2m_live.description.grammar import BarDescription, Description, GrammarError, parse
from e2m_live.description.vocab import (
    BAR_KEY,
    CHORD_KEY,
    INSTRUMENT_KEY,
    MEAN_DURATION_KEY,
    MEAN_PITCH_KEY,
    MEAN_VELOCITY_KEY,
    NOTE_DENSITY_KEY,
    TIME_SIGNATURE_KEY,
)
from e2m_live.features import FEATURE_ORDER, EmotionFeatures, FeatureError
from e2m_live.loudness import REFERENCE_DB

#: Features where the input carries none (describe JSON, tokens, MIDI): velocities as decoded
#: (loudness at the gain-1 reference) and no groove rules (danceability 0.4, where they start), so
#: the description alone decides; a MIDI file adds its key, mode and tempo.
NEUTRAL = EmotionFeatures(loudness=REFERENCE_DB, danceability=0.4)
#: Bar record field -> token key of the four bar means, in token order.
_HEADER = {
    "note_density": NOTE_DENSITY_KEY,
    "mean_velocity": MEAN_VELOCITY_KEY,
    "mean_pitch": MEAN_PITCH_KEY,
    "mean_duration": MEAN_DURATION_KEY,
}
_RECORD_FIELDS = frozenset({"index", "bar", "time_signature", *_HEADER, "instruments", "chords", "tokens"})
_MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".smf")


@dataclasses.dataclass
class Source:
    """What the input gives: the description, and the features and key lock when it has them."""

    description: Description
    features: EmotionFeatures | None = None  # None: the input says nothing about the features
    key_lock: float | None = None
    key_known: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "description",
        type=Path,
        metavar="DESCRIPTION",
        help="plan/describe JSON, a JSON token list, or a MIDI file ('-': JSON on stdin)",
    )
    add_feature_arguments(parser)
    group = parser.add_argument_group("arrangement (applied to the description)")
    group.add_argument(
        "--key-lock",
        dest="key_lock",
        default=None,
        metavar="X",
        help="how strictly pitched instruments keep to the scale, 0..1 (default: the plan's, "
        f"else {DEFAULT_KEY_LOCK} when the key is known, else 0)",
    )
    group.add_argument(
        "--instruments",
        default=None,
        metavar="NAME[,NAME...]",
        help="every bar that plays gets exactly these instruments (GM names, 0..127, drums)",
    )
    group.add_argument(
        "--mute",
        dest="mute",
        action="append",
        default=None,
        metavar="NAME",
        help="take this instrument out of every bar (repeatable)",
    )
    parser.add_argument(
        "--bars",
        default=None,
        metavar="START:END",
        help="only bars Bar_START..Bar_END of the description, END included (5:12, 3:, :8)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed; the decoder uses N + 1, as `generate --seed N` does",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="decoder sampling temperature; 0 = most likely (default 1.0)",
    )
    add_output_arguments(parser, plan_out="write what was decoded")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="folder holding planner/ and figaro-compact/ (default: models/ or $E2M_MODELS_DIR)",
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for decoding (default 1)")
    add_decoder_arguments(parser)


# --- reading the input ---------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from None


def load_source(path: Path) -> Source:
    """The description (and features) in ``path``: JSON of ``plan``/``describe``, tokens, or MIDI."""
    data = _read(path)
    if data[:4] == b"MThd" or path.suffix.lower() in _MIDI_SUFFIXES:
        return _from_midi(path, data)
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{path}: neither a MIDI file nor valid JSON ({error})") from None
    try:
        return _from_json(path, document)
    except GrammarError as error:
        raise UsageError(f"{path}: {error}") from None


def _from_midi(path: Path, data: bytes) -> Source:
    from e2m_live.analysis import estimate_features
    from e2m_live.description.extract import MidiError, extract, load_midi

    try:
        midi = load_midi(data)
        description = parse(extract(midi).description)
    except (MidiError, GrammarError) as error:
        raise UsageError(f"{path}: {error}") from None
    try:
        found = estimate_features(midi)  # key finding and the file's tempo
        features = NEUTRAL.replace(key=found.key, mode=found.mode, tempo=found.tempo)
    except (FeatureError, ValueError):
        return Source(description)
    return Source(description, features, key_known=True)


def _from_json(path: Path, document: Any) -> Source:
    if isinstance(document, list):
        return Source(parse(document))
    if not isinstance(document, dict):
        raise UsageError(f"{path}: expected a JSON object with 'bars' or 'tokens', or a list of tokens")
    if "bars" in document:
        tokens = records_to_tokens(document["bars"])
        _warn_if_tokens_edited(path, document, tokens)
    elif "tokens" in document:
        tokens = document["tokens"]
    else:
        raise UsageError(f"{path}: a description needs 'bars' or 'tokens'")
    source = Source(parse(tokens))
    if document.get("features") is not None:
        try:
            features = document["features"]
            if not isinstance(features, dict):
                raise ValueError("'features' must be an object")
            source.features = EmotionFeatures.from_dict({**EmotionFeatures().to_dict(), **features})
            source.key_known = True
        except (FeatureError, ValueError) as error:
            raise UsageError(f"{path}: features: {error}") from None
    if isinstance(document.get("arrangement"), dict):
        try:
            source.key_lock = Arrangement.from_dict(document["arrangement"]).key_lock
        except ArrangementError as error:
            raise UsageError(f"{path}: arrangement: {error}") from None
    return source


def _warn_if_tokens_edited(path: Path, document: dict, tokens: list[str]) -> None:
    """Say so when the top-level ``tokens`` disagree with the bars and look edited: in ``describe``
    JSON, edited records leave the top-level and per-bar ``tokens`` equal (both stale), so only a
    difference between those two means the tokens were edited."""
    given = document.get("tokens")
    if not isinstance(given, list) or given == tokens:
        return
    records = document["bars"]
    per_bar: list[Any] = [r.get("tokens") for r in records if isinstance(r, dict)]
    if per_bar and all(isinstance(t, list) for t in per_bar) and [t for b in per_bar for t in b] == given:
        return
    first = next(
        (i for i, (a, b) in enumerate(zip(given, tokens, strict=False)) if a != b),
        min(len(given), len(tokens)),
    )
    print(
        f"e2m-live decode: warning: {path}: 'tokens' differ from 'bars' from token {first} on; "
        "decoding the bars (delete 'tokens' to silence this)",
        file=sys.stderr,
    )


def records_to_tokens(records: Any) -> list[str]:
    """Description tokens of ``plan --json`` / ``describe --json`` bar records, unchecked (the grammar
    checks them, so its message names the token, its index and the bar). Instruments may be written as
    ``--instruments`` takes them (``piano``, ``33``, ``drums``); a bar without a number follows the one
    before (the first is ``Bar_1``)."""
    if not isinstance(records, list):
        raise GrammarError("'bars' must be a list of bar objects")
    tokens: list[str] = []
    number = 0
    for position, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise GrammarError(f"bar {position}: a bar must be a JSON object, got {type(record).__name__}")
        unknown = sorted(set(record) - _RECORD_FIELDS)
        missing = [name for name in ("time_signature", *_HEADER) if name not in record]
        if unknown or missing:
            raise GrammarError(f"bar {position}: unknown fields {unknown}, missing fields {missing}")
        given = record.get("index", record.get("bar"))
        number = given if isinstance(given, int) else number + 1
        signature = record["time_signature"]
        if isinstance(signature, list):
            signature = "/".join(str(part) for part in signature)
        tokens += [
            f"{BAR_KEY}_{number if given is None or isinstance(given, int) else given}",
            f"{TIME_SIGNATURE_KEY}_{signature}",
        ]
        tokens += [f"{key}_{record[name]}" for name, key in _HEADER.items()]
        for name in ("instruments", "chords"):
            if not isinstance(record.get(name, []), list):
                raise GrammarError(f"bar {position}: {name!r} must be a list")
        tokens += [f"{INSTRUMENT_KEY}_{_instrument(value)}" for value in record.get("instruments", [])]
        tokens += [f"{CHORD_KEY}_{value}" for value in record.get("chords", [])]
    return tokens


def _instrument(value: Any) -> Any:
    try:
        return instrument_name(value)
    except ArrangementError:
        return value  # the grammar names it


# --- flags on top of the input -------------------------------------------------------------------


def _features(args: argparse.Namespace, source: Source) -> EmotionFeatures:
    if args.time_signature is not None:
        raise UsageError("--time-signature does not apply: the description sets each bar's time signature")
    flagged = features_from_args(args)  # validates every flag
    if args.mood is not None:
        return flagged
    base = source.features or NEUTRAL
    given = {name: getattr(flagged, name) for name in FEATURE_ORDER if getattr(args, name, None) is not None}
    return base.replace(**given) if given else base


def _arranged(description: Description, arrangement: Arrangement) -> Description:
    """Every playing bar gets ``arrangement.instruments`` (if set) minus the muted; a bar left without
    instruments becomes a silent bar (its means bin 0, as the grammar wants)."""
    if arrangement.instruments is None and not arrangement.muted:
        return description
    bars = []
    for bar in description.bars:
        names = bar.instruments
        if names and arrangement.instruments is not None:
            names = arrangement.instruments
        names = tuple(name for name in names if name not in arrangement.muted)
        if names:
            bars.append(dataclasses.replace(bar, instruments=names))
        else:
            silent: dict[str, Any] = dict.fromkeys(_HEADER, 0)
            bars.append(dataclasses.replace(bar, instruments=(), **silent))
    return Description(bars)


def _select(description: Description, spec: str | None) -> Description:
    """Bars ``Bar_START..Bar_END`` (by their numbers, END included)."""
    if spec is None:
        return description
    numbers = description.numbers()
    start_text, sep, end_text = spec.partition(":")
    try:
        start = int(start_text) if start_text.strip() else numbers[0]
        end = int(end_text) if end_text.strip() else numbers[-1]
    except ValueError:
        raise UsageError(f"--bars wants START:END with whole numbers, got {spec!r}") from None
    if not sep:
        end = start
    if start < 1 or end < start:
        raise UsageError(f"--bars {spec!r}: need 1 <= START <= END")
    kept: list[BarDescription] = [
        bar for bar, number in zip(description.bars, numbers, strict=True) if start <= number <= end
    ]
    if not kept:
        raise UsageError(f"--bars {spec!r}: the description has bars Bar_{numbers[0]}..Bar_{numbers[-1]}")
    return Description(kept)


# --- the command ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    check_decoding_arguments(args)
    source = load_source(args.description)
    features = _features(args, source)
    arrangement = arrangement_from_args(args)
    if args.key_lock is None:
        known = source.key_known or args.key is not None or args.mood is not None
        lock = source.key_lock if source.key_lock is not None else (DEFAULT_KEY_LOCK if known else 0.0)
        arrangement = arrangement.replace(key_lock=lock)
    description = _select(source.description, args.bars)
    try:
        description = _arranged(description, arrangement)
    except GrammarError as error:
        raise UsageError(str(error)) from None
    from tqdm import tqdm

    from e2m_live.commands.generate import write_wav
    from e2m_live.description.remi import bars_to_midi, bars_to_smf
    from e2m_live.models import ModelsMissing

    started = time.perf_counter()
    try:
        pipeline = Pipeline.load(
            args.model_dir, threads=args.threads, quantize=None if args.float32 else "int8"
        )
    except ModelsMissing as error:
        raise UsageError(str(error)) from None
    loaded = time.perf_counter()
    most = min(pipeline.decoder.config.max_bars, 511)
    if len(description) > most:
        raise UsageError(
            f"the description has {len(description)} bars, the model takes at most {most}: "
            "choose some with --bars START:END"
        )
    bars = []
    progress = tqdm(
        total=len(description), unit="bar", desc="decoding", file=sys.stderr, disable=None, leave=False
    )
    try:
        stream = pipeline.decode(
            description,
            features,
            seed=None if args.seed is None else args.seed + 1,
            options=DecodingOptions(
                temperature=args.temperature, top_p=args.top_p, max_tokens_per_bar=args.max_tokens_per_bar
            ),
            arrangement=arrangement,
        )
        with progress:
            for generated in stream:
                bars.append(generated.bar)
                progress.update(1)
    except (PipelineError, ValueError) as error:  # the decoder checks its arguments when it starts
        raise UsageError(str(error)) from None
    finished = time.perf_counter()
    args.output.write_bytes(bars_to_smf(bars, default_tempo=features.tempo))
    music = section_duration(bars)
    notes = sum(len(b.notes) for b in bars)
    print(
        f"wrote {args.output}: {len(bars)} bars, {notes} notes, "
        f"{music:.1f} s of music at {features.tempo:g} BPM; "
        f"decoded in {finished - loaded:.1f} s (+{loaded - started:.1f} s loading), "
        f"{music / max(finished - loaded, 1e-9):.2f}x real time"
    )
    if args.plan_out is not None:
        args.plan_out.write_text(
            json.dumps(
                {
                    "features": features.to_dict(),
                    "arrangement": arrangement.to_dict(),
                    "tokens": description.tokens(),
                    "bars": description.to_json()["bars"],
                }
            )
            + "\n"
        )
        print(f"wrote {args.plan_out}")
    if args.wav is not None:
        font = write_wav(bars_to_midi(bars, default_tempo=features.tempo), args.wav, args.soundfont)
        print(f"wrote {args.wav} ({font.name})")
    return 0
