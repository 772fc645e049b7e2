"""The listening set: the eight moods and four ensembles, rendered to hear and to look at.

    python -m training.evaluation.listening --out listening/            # .mid and piano-roll .png per piece
    python -m training.evaluation.listening --out listening/ --wav      # and a FluidSynth .wav per piece

Twelve pieces of 12 bars, one fixed seed each (``--seed``, default 1): every mood of
:data:`~e2m_live.features.MOODS` with the ``auto`` ensemble, and the ``piano``, ``band``, ``strings`` and
``electronic`` ensembles at the default features. Each is generated through :mod:`e2m_live.pipeline` as
``e2m-live generate`` does (with an :class:`~e2m_live.arrangement.Arrangement` once the pipeline takes
one), written with the project's MIDI writer, drawn as a piano roll (one colour per instrument, bar lines,
the settings in the title) and, with ``--wav``, rendered like ``e2m-live generate --wav``. ``index.md``
lists each piece with its instruments and the counters of :mod:`training.evaluation.pathology`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# isort: off
from e2m_live.pipeline import Pipeline  # first: sets OpenMP's wait policy

# isort: on
import numpy as np

from e2m_live.arrangement import AUTO, Arrangement
from e2m_live.features import MOODS, EmotionFeatures
from e2m_live.music import Bar
from training.evaluation import pathology

ENSEMBLE_PIECES = ("piano", "band", "strings", "electronic")
DEFAULT_SEED = 1


@dataclass(frozen=True)
class Piece:
    """One piece of the set: a name, the features and the ensemble."""

    name: str
    features: EmotionFeatures
    ensemble: str = AUTO


def listening_set() -> list[Piece]:
    """The moods (auto ensemble) and the ensembles (default features)."""
    moods = [Piece(f"mood-{name}", features) for name, features in MOODS.items()]
    return moods + [Piece(f"ensemble-{name}", EmotionFeatures(), name) for name in ENSEMBLE_PIECES]


def settings_line(piece: Piece, seed: int, key_lock: float) -> str:
    f = piece.features
    return (
        f"energy {f.energy:g}, valence {f.valence:g}, loudness {f.loudness:g} dB, danceability "
        f"{f.danceability:g}, acousticness {f.acousticness:g}, instrumentalness {f.instrumentalness:g}; "
        f"{f.key_label}, {f.time_signature}/4, {f.tempo:g} BPM; ensemble {piece.ensemble}, "
        f"key lock {key_lock:g}, seed {seed}"
    )


def plot_piano_roll(bars: list[Bar], title: str, path: Path) -> None:
    """A piano roll: one colour per instrument (drums at their GM key), bar lines, a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    starts = np.cumsum([0.0, *(b.quarters for b in bars)])
    slots = sorted(pathology.instruments(bars))
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(slots)}
    fig, ax = plt.subplots(figsize=(14, 5.5))
    pitches = []
    for offset, bar in zip(starts, bars, strict=False):
        for note in bar.notes:
            slot = pathology.slot(note)
            x = offset + note.start
            if note.is_drum:  # drum notes are short: draw each hit a sixth of a quarter wide
                ax.add_patch(plt.Rectangle((x, note.pitch - 0.5), 1 / 6, 1.0, color=colours[slot], lw=0))
            else:
                ax.add_patch(
                    plt.Rectangle(
                        (x, note.pitch - 0.45),
                        note.duration,
                        0.9,
                        color=colours[slot],
                        alpha=0.35 + 0.6 * note.velocity / 127,
                        lw=0,
                    )
                )
            pitches.append(note.pitch)
    for x in starts:
        ax.axvline(x, color="grey", lw=0.6, ls=":")
    ax.set_xlim(
        0,
        max(
            starts[-1],
            max((o + n.end for o, b in zip(starts, bars, strict=False) for n in b.notes), default=0.0),
        )
        + 0.5,
    )
    ax.set_ylim((min(pitches) - 2, max(pitches) + 2) if pitches else (48, 84))
    ax.set_xticks(starts[:-1] + 0.0, [str(i + 1) for i in range(len(bars))])
    ax.set_xlabel("bar")
    ax.set_ylabel("MIDI pitch (drums: GM drum key)")
    legend = [Patch(color=colours[s], label=pathology.slot_name(s)) for s in slots]
    ax.legend(handles=legend, loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the .mid, .png (and .wav) files")
    parser.add_argument("--wav", action="store_true", help="also render each piece with FluidSynth")
    parser.add_argument("--soundfont", type=Path, default=None, help="soundfont for --wav")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed of every piece (default {DEFAULT_SEED})"
    )
    parser.add_argument("--bars", type=int, default=12, help="bars per piece (default 12)")
    parser.add_argument("--only", nargs="+", default=None, help="only these pieces (e.g. mood-happy)")
    parser.add_argument("--model-dir", type=Path, default=None, help="models/ folder (default: shipped)")
    args = parser.parse_args(argv)
    if args.seed < 0 or not 1 <= args.bars <= 64:
        parser.error("--seed must be >= 0 and --bars in 1..64")
    from e2m_live.audio import render_wav
    from e2m_live.description.remi import bars_to_midi, bars_to_smf

    pieces = [p for p in listening_set() if not args.only or p.name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline.load(args.model_dir, threads=1)
    arranged = "arrangement" in inspect.signature(pipeline.generate).parameters
    rows = []
    for piece in pieces:
        arrangement = Arrangement(ensemble=piece.ensemble)
        extra = {"arrangement": arrangement} if arranged else {}
        started = time.perf_counter()
        generated = list(pipeline.generate(piece.features, bars=args.bars, seed=args.seed, **extra))
        seconds = time.perf_counter() - started
        bars = [g.bar for g in generated]
        settings = settings_line(piece, args.seed, arrangement.key_lock)
        (args.out / f"{piece.name}.mid").write_bytes(bars_to_smf(bars, default_tempo=piece.features.tempo))
        plot_piano_roll(bars, f"{piece.name}: {settings}", args.out / f"{piece.name}.png")
        if args.wav:
            render_wav(
                bars_to_midi(bars, default_tempo=piece.features.tempo),
                args.out / f"{piece.name}.wav",
                args.soundfont,
            )
        counts = pathology.count_piece(bars, piece.features.key, piece.features.mode)
        planned = sorted(
            {
                t.removeprefix("Instrument_")
                for g in generated
                for t in g.description
                if t.startswith("Instrument_")
            }
        )
        rows.append(
            {
                "piece": piece.name,
                "settings": settings,
                "seconds": seconds,
                "planned": planned,
                "counts": counts.to_dict(),
            }
        )
        print(
            f"{piece.name}: {counts.notes} notes, instruments {list(counts.instruments)}, {seconds:.1f} s",
            flush=True,
        )
    (args.out / "listening.json").write_text(
        json.dumps({"arrangement_passed": arranged, "pieces": rows}, indent=1, default=float) + "\n"
    )
    (args.out / "index.md").write_text(index_table(rows))
    print(f"wrote {len(rows)} pieces to {args.out}")
    return 0


def index_table(rows: list[dict]) -> str:
    """The set as a Markdown table: instruments planned and played, and the counters."""
    lines = [
        "| piece | planned | played | notes | repeated | longest note (bars) | in scale |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        c = row["counts"]
        played = ", ".join(pathology.slot_name(s) for s in c["instruments"])
        lines.append(
            f"| {row['piece']} | {', '.join(row['planned'])} | {played} | {c['notes']} | "
            f"{c['repeated_notes']} | {c['longest_note_bars']:.2f} | {c['in_scale_share']:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
