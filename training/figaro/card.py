"""The model card of an exported FIGARO model: data, size, training, metrics, speed, listening check.

Called by ``python -m training.figaro.evaluate --card MODEL_DIR``. Renders the first generated
examples to MIDI and WAV (FluidSynth, General MIDI soundfont) under the evaluation folder and their
piano rolls (PNG) into ``MODEL_DIR``, measures what a listener would notice first (silent bars,
notes held for bars, one instrument playing most of the notes, clipping or silence in the audio),
and writes ``MODEL_DIR/MODEL_CARD.md``.
"""

from __future__ import annotations

import json
import math
import os
import wave
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from e2m_live.description.remi import tokens_to_bars, tokens_to_midi
from e2m_live.music import Bar
from training.figaro import fidelity
from training.figaro.speed import REFERENCE_SECONDS, REFERENCE_TOKENS
from training.figaro.tables import corpus_table, metrics_table

SOUNDFONT = Path("/usr/share/sounds/sf2/default-GM.sf2")
SAMPLE_RATE = 22050
#: Folder -> licence, from shared/datasets/README.md.
LICENCES = {
    "lakh-clean-beatles": "Lakh MIDI clean_midi (via craffel/midi-ground-truth): CC-BY 4.0",
    "pop909": "POP909 (music-x-lab/POP909-Dataset): MIT",
    "emopia": "EMOPIA (george-chou/EMOPIA-render): CC-BY-NC-SA 4.0, research use",
    "vgmidi": "VGMIDI (lucasnfe/vgmidi): no licence file, research use",
    "nottingham": "Nottingham (jukedeck/nottingham-dataset): GPL-3.0",
}


# --- speed ---------------------------------------------------------------------------------------


# --- listening check ---------------------------------------------------------------------------


def bar_offsets(bars: Sequence[Bar]) -> list[float]:
    offsets, t = [], 0.0
    for bar in bars:
        offsets.append(t)
        t += bar.quarters
    return offsets


def listening_stats(tokens: Sequence[str]) -> dict[str, Any]:
    """What stands out in an example before listening: silence, held notes, one instrument hogging."""
    bars = tokens_to_bars(tokens)
    notes = [n for b in bars for n in b.notes]
    names = Counter("drums" if n.is_drum else _program_name(n.program) for n in notes)
    top, top_count = names.most_common(1)[0] if names else ("none", 0)
    pitched = [n for n in notes if not n.is_drum]
    return {
        "bars": len(bars),
        "notes": len(notes),
        "silent_bars": sum(1 for b in bars if not b.notes),
        "instruments": dict(names.most_common()),
        "top_instrument": top,
        "top_instrument_share": top_count / len(notes) if notes else 0.0,
        "longest_note_quarters": max((n.duration for n in pitched), default=0.0),
        "notes_held_over_2_bars": sum(1 for n in pitched if n.duration > 8.0),
        "pitch_range": [
            min((n.pitch for n in pitched), default=0),
            max((n.pitch for n in pitched), default=0),
        ],
        "max_onsets_per_quarter": max(
            (
                max(
                    fidelity.onsets_per_quarter(fidelity.BarFacts(tuple(b.notes), b.numerator, b.denominator))
                )
                for b in bars
            ),
            default=0,
        ),
    }


def _program_name(program: int) -> str:
    from e2m_live.description.vocab import remi_tokens

    names = [t.split("_", 1)[1] for t in remi_tokens() if t.startswith("Instrument_")]
    return names[program] if 0 <= program < 128 else str(program)


def render_wav(tokens: Sequence[str], path: Path, soundfont: Path = SOUNDFONT) -> dict[str, float] | None:
    """Render with FluidSynth to a 16-bit mono WAV; returns audio statistics (``None`` if no synth)."""
    if not soundfont.is_file():
        return None
    try:
        audio = tokens_to_midi(tokens).fluidsynth(fs=SAMPLE_RATE, synthesizer=str(soundfont), normalize=False)
    except (ImportError, OSError, RuntimeError, ValueError):
        return None
    if audio.size == 0:
        audio = np.zeros(SAMPLE_RATE)
    peak = float(np.max(np.abs(audio)))
    scaled = audio / max(peak, 1e-9) * 0.9
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(SAMPLE_RATE)
        fh.writeframes((scaled * 32767).astype("<i2").tobytes())
    frame = SAMPLE_RATE // 20
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1)) if n else np.zeros(1)
    ref = float(np.max(rms)) or 1.0
    return {
        "seconds": len(audio) / SAMPLE_RATE,
        "silent_fraction": float(np.mean(rms < ref * 10 ** (-50 / 20))),  # 50 dB below the loudest frame
        "peak_before_normalising": peak,
    }


def piano_roll(tokens: Sequence[str], path: Path, title: str) -> Path:
    """Notes as bars over time (quarters), one colour per instrument, drums as dots at the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = tokens_to_bars(tokens)
    offsets = bar_offsets(bars)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    colours: dict[str, Any] = {}
    cmap = plt.get_cmap("tab10")
    for bar, t0 in zip(bars, offsets, strict=True):
        for n in bar.notes:
            name = "drums" if n.is_drum else _program_name(n.program)
            colour = colours.setdefault(name, cmap(len(colours) % 10))
            if n.is_drum:
                ax.plot(t0 + n.start, 14 + (n.pitch - 35) * 0.3, ".", color=colour, ms=3)
            else:
                ax.add_patch(
                    plt.Rectangle(
                        (t0 + n.start, n.pitch - 0.4),
                        n.duration,
                        0.8,
                        color=colour,
                        alpha=0.35 + 0.6 * n.velocity / 127,
                        lw=0,
                    )
                )
    for t0 in offsets:
        ax.axvline(t0, color="0.8", lw=0.6, zorder=0)
    end = offsets[-1] + bars[-1].quarters if bars else 48.0
    ax.set_xlim(0, end)
    ax.set_ylim(10, 110)
    ax.set_xlabel("quarter notes (grey lines: bars)")
    ax.set_ylabel("MIDI pitch (drums: dots below 25)")
    ax.set_title(title, fontsize=10)
    handles = [plt.Line2D([], [], color=c, lw=6, label=n) for n, c in colours.items()]
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --- training facts ----------------------------------------------------------------------------


def data_summary(data: str) -> dict[str, int]:
    """Training segments per corpus of the run's data (dataset directory or pack)."""
    try:
        from training.figaro.train import load_segments

        segments = load_segments(data, "train")
    except (OSError, ValueError, ImportError):
        return {}
    return dict(Counter(str(getattr(s, "corpus", "")) for s in segments))


def run_end(model_dir: Path) -> dict[str, Any]:
    """The ``"event": "end"`` record of the training run (steps, tokens, wall time) from
    ``device_train.log`` beside the weights, or ``{}``."""
    log_path = model_dir / "device_train.log"
    if not log_path.is_file():
        return {}
    text = log_path.read_text(errors="replace")
    at = text.rfind('"event": "end"')
    start = text.rfind("{", 0, at) if at >= 0 else -1
    end = text.find("}", at) if at >= 0 else -1
    if start < 0 or end < 0:
        return {}
    try:
        return json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return {}


def speed_lines(speed: dict[str, Any]) -> list[str]:
    """Card lines for :func:`~training.figaro.speed.measure_realtime` results keyed by weight format."""
    lines = []
    for fmt, r in speed.items():
        lines.append(
            f"- {fmt}: {r['tokens']} tokens in {r['seconds']:.1f} s "
            f"({r['tokens_per_s']:.0f} tokens/s, first bar after {r['first_bar_seconds']:.2f} s, "
            f"{r['cpu_seconds']:.1f} s CPU): **real-time factor {r['real_time_factor']:.3f}** wall "
            f"(target <= 0.25; load average {r['load_average_1min']:.1f} on 2 cores), "
            f"{r.get('cpu_real_time_factor', math.nan):.3f} in CPU time summed over threads."
        )
    return lines


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def write_card(
    model_dir: str | Path,
    report: dict[str, Any],
    examples: Sequence[Sequence[str]],
    example_descriptions: Sequence[Sequence[str]],
    out_dir: str | Path,
    notes: str = "",
    log: Callable[[str], None] = print,
) -> Path:
    """Render the examples and write ``MODEL_CARD.md`` into ``model_dir``."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    training_path = model_dir / "training.json"
    training = json.loads(training_path.read_text()) if training_path.is_file() else {}
    listening = render_examples(examples, example_descriptions, model_dir, out_dir, log)
    lines = [
        *_model_lines(model_dir, training.get("train_config", {})),
        *_training_lines(training, run_end(model_dir)),
        *_fidelity_lines(report, model_dir),
        *_speed_section(report),
        *_listening_lines(listening, out_dir, notes),
        *_weakness_lines(report["summaries"]),
    ]
    path = model_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path


def render_examples(
    examples: Sequence[Sequence[str]],
    example_descriptions: Sequence[Sequence[str]],
    model_dir: Path,
    out_dir: Path,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Each example as WAV and MIDI (``out_dir``) and a piano roll (``model_dir``), with its listening
    statistics."""
    listening = []
    for i, tokens in enumerate(examples):
        stats = listening_stats(tokens)
        audio = render_wav(tokens, out_dir / f"example_{i}.wav")
        tokens_to_midi(tokens).write(str(out_dir / f"example_{i}.mid"))
        summary = ", ".join(
            sorted({t.split("_", 1)[1] for t in example_descriptions[i] if t.startswith("Instrument_")})
        )
        png = piano_roll(
            tokens,
            model_dir / f"example_{i}_pianoroll.png",
            f"example {i}: {stats['bars']} bars, described instruments: {summary}",
        )
        listening.append({"stats": stats, "audio": audio, "png": png.name})
        log(f"[card] example {i}: {stats} audio={audio}")
    return listening


def _model_lines(model_dir: Path, train_cfg: dict[str, Any]) -> list[str]:
    """Title, weights, architecture, data and its licences."""
    from e2m_live.figaro.config import FigaroConfig
    from e2m_live.figaro.model import FigaroModel

    config = FigaroConfig.load(model_dir / "config.json")
    n_params = FigaroModel(config).num_parameters()
    files = sorted(model_dir.glob("model*.safetensors"))
    lines = [
        "# figaro-compact",
        "",
        "FIGARO description-to-music transformer (description -> REMI+), compact size for live use.",
        "Weights: fp16 safetensors ("
        + ", ".join(f"`{f.name}` {f.stat().st_size / 2**20:.1f} MiB" for f in files)
        + "), `config.json`. Load with `training.figaro.export.load_exported(dir)`"
        + (" or `e2m_live.figaro.checkpoint.load_pretrained(dir)`." if len(files) == 1 else "."),
        "",
        "## Model",
        f"- {n_params:,} parameters: d_model {config.d_model}, {config.encoder_layers} encoder + "
        f"{config.decoder_layers} decoder layers, {config.heads} heads, FFN {config.ffn}, context "
        f"{config.context_size} tokens, relative key-query attention as FIGARO.",
        "",
        "## Data",
        f"- Training data: `{train_cfg.get('data', '?')}` (segments of 12 bars, non-overlapping, bars "
        "numbered from 1, random key shifts -5..+6 when `transpose` is on). Split by song.",
    ]
    per_corpus = data_summary(train_cfg["data"]) if train_cfg.get("data") else {}
    for corpus, count in sorted(per_corpus.items()):
        lines.append(
            f"  - `{corpus}`: {count} training segments; {LICENCES.get(corpus, 'licence: see shared README')}"
        )
    lines += [
        "- Licences of the data bind the weights' use: EMOPIA is non-commercial (CC-BY-NC-SA), VGMIDI has "
        "no licence (research use), Nottingham is GPL-3.0.",
        "",
    ]
    return lines


def _training_lines(training: dict[str, Any], end: dict[str, Any]) -> list[str]:
    """The command, the run and the shipped (best validation) checkpoint."""
    train_cfg = training.get("train_config", {})
    return [
        "## Training",
        f"- Command: `{training.get('command', '?')}`",
        (
            f"- Run: {end['step']:,} steps, {end['tokens_seen']:,} target tokens, "
            f"{end['wall_s'] / 60:.1f} min wall ({end.get('reason', '?')}) on {end.get('device', '?')}; "
            "the shipped weights are the best validation checkpoint: "
            if end
            else "- Shipped weights: "
        )
        + f"step {training.get('step', '?')}, {training.get('tokens_seen', 0):,} tokens, "
        f"{_fmt(float(training.get('trained_seconds', math.nan)) / 60, 1)} min of training; "
        f"batch {train_cfg.get('batch_size', '?')} x accumulation {train_cfg.get('grad_accum', '?')}, "
        f"lr {train_cfg.get('lr', '?')}, device {train_cfg.get('device', '?')}, precision "
        f"{train_cfg.get('precision', '?')}.",
        f"- Validation (best checkpoint): loss {_fmt(training.get('best_val_loss', math.nan))} nats/token, "
        f"perplexity {_fmt(training.get('validation', {}).get('val_ppl', math.nan), 2)}, mean per-song "
        f"perplexity {_fmt(training.get('validation', {}).get('val_song_ppl', math.nan), 2)}.",
        "",
    ]


def _fidelity_lines(report: dict[str, Any], model_dir: Path) -> list[str]:
    """The fidelity table against the baseline and the ceiling, and by corpus."""
    return [
        "## Description fidelity",
        f"{report['n_segments']} validation segments ({report['bars']} bars each), one per song first, "
        "the corpora taking turns; "
        f"sampling temperature {report['settings']['temperature']}, top-p {report['settings']['top_p']}, "
        + ("grammar-constrained" if report["settings"].get("constrained", True) else "unconstrained")
        + " decoding. Every system's output goes REMI -> MIDI -> extraction and is compared "
        "bar by bar with the segment (`training/figaro/fidelity.py`). `ceiling` is the ground truth itself "
        "through the same path; `baseline` draws random chord tones at the described density.",
        "",
        metrics_table(report["summaries"]),
        "",
        "Command: `"
        + report.get(
            "command",
            f"python -m training.figaro.evaluate --model {model_dir} --data {report['data']} "
            f"--limit {report['n_segments']} --card {model_dir}",
        )
        + "`",
        "",
        *(
            [
                "",
                "The model by corpus:",
                "",
                corpus_table(
                    report["by_corpus"],
                    {c: sum(s["corpus"] == c for s in report["segments"]) for c in report["by_corpus"]},
                ),
            ]
            if report.get("by_corpus")
            else []
        ),
        "",
    ]


def _speed_section(report: dict[str, Any]) -> list[str]:
    """Measured real-time factors and the evaluation's own generation rate."""
    timing = report.get("timing", {})
    tok_s = timing.get("model_tokens", 0) / max(timing.get("model_seconds", 0.0), 1e-9)
    return [
        "## Speed",
        *speed_lines(report.get("speed", {})),
        "- Generation during the evaluation (segments after the first, real token counts): "
        f"{timing.get('model_tokens', 0)} tokens in "
        f"{_fmt(timing.get('model_seconds', math.nan), 1)} s = {tok_s:.0f} tokens/s per process "
        f"({report.get('threads', 2)} thread(s) each, {report.get('workers', 1)} process(es) side by side) "
        f"(load average {os.getloadavg()[0]:.1f} when this card was written).",
        f"  at that rate 12 bars of {REFERENCE_TOKENS} tokens at 120 BPM (24 s of music) take a real-time "
        f"factor of {(REFERENCE_TOKENS / tok_s) / REFERENCE_SECONDS if tok_s else math.nan:.3f}.",
        "",
    ]


def _listening_lines(listening: list[dict[str, Any]], out_dir: Path, notes: str) -> list[str]:
    """What each rendered example holds, then the listener's notes."""
    lines = [
        "## Listening check",
        "Three 12-bar examples from validation descriptions, rendered with FluidSynth "
        f"(`{SOUNDFONT}`) to `{out_dir}/example_*.wav`; piano rolls here:",
        "",
    ]
    for item in listening:
        s, a = item["stats"], item["audio"]
        lines.append(
            f"- `{item['png']}`: {s['notes']} notes in {s['bars']} bars, {s['silent_bars']} silent bars, "
            f"most notes from {s['top_instrument']} ({s['top_instrument_share']:.0%}), longest pitched note "
            f"{s['longest_note_quarters']:.1f} quarters ({s['notes_held_over_2_bars']} held over 2 bars), "
            f"pitches {s['pitch_range'][0]}-{s['pitch_range'][1]}"
            + (
                f"; audio {a['seconds']:.1f} s, {a['silent_fraction']:.0%} of it silent"
                if a
                else "; no audio"
            )
        )
    if notes:
        lines += ["", notes.strip()]
    return lines


def _weakness_lines(summaries: dict[str, dict[str, float]]) -> list[str]:
    below = [k for k, ok in fidelity.meets_targets(summaries.get("model", {})).items() if not ok]
    return [
        "",
        "## Known weaknesses",
        f"- Metrics below target: {', '.join(below) if below else 'none'}.",
        "- Small corpus (a few thousand songs, mostly piano and folk) and a short training run: expect "
        "weaker chord and groove fidelity than FIGARO's published model (trained on the full Lakh MIDI).",
        "- The chord ceiling is below 1: chords are recognised again from the rendered MIDI on its beat "
        "grid, which disagrees with the originals where the source MIDI's beats were unreliable (POP909).",
        "",
    ]


# --- command line: rewrite the card from a finished evaluation ----------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.figaro.card --model DIR --run EVAL_DIR [--notes FILE] [--speed]``.

    Rewrites ``DIR/MODEL_CARD.md`` from an evaluation folder (``metrics.json`` and
    ``examples.json`` written by :mod:`training.figaro.evaluate`), optionally measuring the
    real-time factor first (kept in ``EVAL_DIR/speed.json`` and reused later).
    """
    import argparse
    import sys

    p = argparse.ArgumentParser(
        prog="python -m training.figaro.card", description=main.__doc__.split("\n")[0]
    )
    p.add_argument("--model", required=True, help="exported model directory")
    p.add_argument("--run", required=True, help="evaluation output folder (metrics.json, examples.json)")
    p.add_argument(
        "--notes", help="markdown file appended to the listening check (what the piano rolls show)"
    )
    p.add_argument("--speed", action="store_true", help="measure the real-time factor (float32 and int8)")
    p.add_argument("--data", default="data/figaro_pack.npz", help="where --speed finds the densest segment")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    run = Path(args.run)
    try:
        report = json.loads((run / "metrics.json").read_text())
        examples = json.loads((run / "examples.json").read_text())
        notes = Path(args.notes).read_text() if args.notes else ""
        if args.speed:
            from training.figaro.segments import load_eval_segments, select_segments
            from training.figaro.speed import measure_speed

            segments = select_segments(load_eval_segments(args.data, "val"), report["n_segments"], 12)
            speed = measure_speed(args.model, segments, args.threads, print)
            (run / "speed.json").write_text(json.dumps(speed, indent=1) + "\n")
        if (run / "speed.json").is_file():
            report["speed"] = json.loads((run / "speed.json").read_text())
        path = write_card(args.model, report, examples["tokens"], examples["descriptions"], run, notes=notes)
    except (OSError, ValueError, KeyError) as err:
        print(f"figaro_card: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
