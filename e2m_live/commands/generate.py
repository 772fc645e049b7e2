"""`e2m-live generate`: emotion features -> plan -> decoded bars -> MIDI (and WAV).

    e2m-live generate --mood happy -o happy.mid
    e2m-live generate --energy 0.8 --valence 0.3 --key A --mode minor --bars 12 --seed 7 \
        -o out.mid --wav out.wav --plan-out plan.json
    e2m-live generate --features my_features.json --tempo 96 -o out.mid
    e2m-live generate --mood happy --ensemble band --key-lock 1 -o band.mid
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from e2m_live.audio import AudioError, render_wav
from e2m_live.commands.errors import UsageError

# e2m_live.pipeline sets OpenMP's wait policy: it must be imported before anything loads OpenMP.
from e2m_live.pipeline import DecodingOptions, Pipeline, PipelineError, section_duration

if TYPE_CHECKING:
    import pretty_midi

    from e2m_live.features import EmotionFeatures

# isort: split
from e2m_live.commands.feature_flags import (
    add_arrangement_arguments,
    add_feature_arguments,
    arrangement_from_args,
    features_from_args,
)
from e2m_live.planner.registry import DEFAULT_PLANNER, PLANNER_NAMES


def add_output_arguments(parser: argparse.ArgumentParser, *, plan_out: str) -> None:
    """The files ``generate`` and ``decode`` write: ``-o OUT.mid``, ``--wav``, ``--soundfont`` and
    ``--plan-out`` (its help starts with ``plan_out``)."""
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT.mid", help="MIDI file to write"
    )
    parser.add_argument(
        "--wav", type=Path, default=None, metavar="OUT.wav", help="also render audio with FluidSynth"
    )
    parser.add_argument(
        "--soundfont",
        type=Path,
        default=None,
        help="soundfont for --wav (default: default-GM.sf2, else pretty_midi's TimGM6mb)",
    )
    parser.add_argument(
        "--plan-out",
        type=Path,
        default=None,
        metavar="PLAN.json",
        help=f'{plan_out} as {{"features", "arrangement", "tokens", "bars"}} JSON',
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_feature_arguments(parser)
    add_arrangement_arguments(parser)
    parser.add_argument(
        "--features",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="start from the features in this JSON object (missing fields: defaults; flags override it)",
    )
    parser.add_argument("--bars", type=int, default=12, help="number of bars (default 12)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (same seed, same music)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling temperature of planner and decoder; 0 = most likely (default 1.0)",
    )
    add_output_arguments(parser, plan_out="write the plan")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="folder holding planner/ and figaro-compact/ (default: models/ or $E2M_MODELS_DIR)",
    )
    parser.add_argument(
        "--planner",
        choices=PLANNER_NAMES,
        default=DEFAULT_PLANNER,
        help=f"which planner (default {DEFAULT_PLANNER}; see docs/planner_comparison.md)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for decoding (default 1: faster than 2 for one-token steps)",
    )
    add_decoder_arguments(parser)


def _features(args: argparse.Namespace) -> EmotionFeatures:
    from e2m_live.features import FEATURE_ORDER, EmotionFeatures, FeatureError

    flagged = features_from_args(args)  # validates every flag
    if args.features is None:
        return flagged
    if args.mood is not None:
        raise UsageError("give either --mood or --features, not both")
    try:
        data = json.loads(args.features.read_bytes())
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object of feature values")
        # Fields the file leaves out take EmotionFeatures' defaults.
        base = EmotionFeatures.from_dict({**EmotionFeatures().to_dict(), **data})
    except OSError as error:
        raise UsageError(f"cannot read {args.features}: {error.strerror or error}") from None
    except (FeatureError, ValueError) as error:
        raise UsageError(f"{args.features}: {error}") from None
    given = [name for name in FEATURE_ORDER if getattr(args, name, None) is not None]
    changes = {name: getattr(flagged, name) for name in given}
    return base.replace(**changes) if changes else base


def _check_output(path: Path, what: str) -> None:
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory")
    if not path.parent.exists():
        raise UsageError(f"{what}: folder {path.parent} does not exist")


def check_decoding_arguments(args: argparse.Namespace) -> None:
    """The checks ``generate`` and ``decode`` share: seed, sampling, threads, and the output paths."""
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if not 0 <= args.temperature <= 10:
        raise UsageError(f"--temperature must be in 0..10, got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    if not 16 <= args.max_tokens_per_bar <= 4096:
        raise UsageError(f"--max-tokens-per-bar must be in 16..4096, got {args.max_tokens_per_bar}")
    if not 1 <= args.threads <= 64:
        raise UsageError(f"--threads must be in 1..64, got {args.threads}")
    _check_output(args.output, "-o")
    for path, flag in ((args.wav, "--wav"), (args.plan_out, "--plan-out")):
        if path is not None:
            _check_output(path, flag)


def _check_arguments(args: argparse.Namespace) -> None:
    if not 1 <= args.bars <= 256:
        raise UsageError(f"--bars must be in 1..256, got {args.bars}")
    check_decoding_arguments(args)


def write_wav(midi: pretty_midi.PrettyMIDI, path: Path, soundfont: Path | None = None) -> Path:
    """:func:`e2m_live.audio.render_wav`, its errors as usage errors; returns the soundfont used."""
    try:
        return render_wav(midi, path, soundfont)
    except AudioError as error:
        raise UsageError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    features = _features(args)
    arrangement = arrangement_from_args(args)
    _check_arguments(args)
    from tqdm import tqdm

    from e2m_live.description.remi import bars_to_midi, bars_to_smf
    from e2m_live.models import ModelsMissing

    started = time.perf_counter()
    try:
        pipeline = Pipeline.load(
            args.model_dir,
            threads=args.threads,
            planner=args.planner,
            quantize=None if args.float32 else "int8",
        )
    except ModelsMissing as error:
        raise UsageError(str(error)) from None
    loaded = time.perf_counter()
    try:
        description = pipeline.plan(
            features, bars=args.bars, seed=args.seed, temperature=args.temperature, arrangement=arrangement
        )
        stream = pipeline.decode(
            description,
            features,
            seed=None if args.seed is None else args.seed + 1,
            options=DecodingOptions(
                temperature=args.temperature, top_p=args.top_p, max_tokens_per_bar=args.max_tokens_per_bar
            ),
            arrangement=arrangement,
        )
    except PipelineError as error:
        raise UsageError(str(error)) from None
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
    bars = []
    progress = tqdm(total=args.bars, unit="bar", desc="decoding", file=sys.stderr, disable=None, leave=False)
    with progress:
        try:
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
        f"generated in {finished - loaded:.1f} s (+{loaded - started:.1f} s loading), "
        f"{music / max(finished - loaded, 1e-9):.2f}x real time"
    )
    if args.wav is not None:
        font = write_wav(bars_to_midi(bars, default_tempo=features.tempo), args.wav, args.soundfont)
        print(f"wrote {args.wav} ({font.name})")
    if args.plan_out is not None:
        print(f"wrote {args.plan_out}")
    return 0


def add_decoder_arguments(parser: argparse.ArgumentParser) -> None:
    """The decoder's sampling and weight flags, shared by ``generate`` and ``decode``."""
    parser.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="decoder nucleus sampling: keep the most likely tokens up to this mass (0..1]",
    )
    parser.add_argument(
        "--max-tokens-per-bar",
        type=int,
        default=512,
        help="decoder budget per bar (default 512; a bar that reaches it is closed)",
    )
    parser.add_argument(
        "--float32",
        action="store_true",
        help="decode with float32 weights (default: int8 weights, faster on CPU)",
    )
