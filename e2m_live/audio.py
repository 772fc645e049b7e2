"""Render a MIDI performance to a WAV file with FluidSynth (offline: ``generate --wav``,
``decode --wav`` and the generation API's ``wav`` jobs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Sample rate of the rendered WAV files.
WAV_SAMPLE_RATE = 44100


class AudioError(RuntimeError):
    """No soundfont, or FluidSynth is not installed; ``str()`` says what to install."""


def render_wav(
    midi: Any, path: Path, soundfont: Path | None = None, sample_rate: int = WAV_SAMPLE_RATE
) -> Path:
    """Render a PrettyMIDI to a 16-bit mono WAV with FluidSynth, peak at 0.9; returns the soundfont
    used. Raises :class:`AudioError` when no soundfont is found or FluidSynth is missing."""
    import numpy as np
    from scipy.io import wavfile

    from e2m_live.live.outputs import find_soundfont

    font = find_soundfont(soundfont)
    if font is None:
        raise AudioError(
            f"no soundfont found{f' at {soundfont}' if soundfont else ''}; install "
            "fluid-soundfont-gm or pass --soundfont FILE.sf2"
        )
    try:
        audio = midi.fluidsynth(fs=sample_rate, synthesizer=str(font))
    except ImportError as error:
        raise AudioError(f"FluidSynth is not available ({error}); install libfluidsynth3") from None
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = audio / peak * 0.9
    wavfile.write(str(path), sample_rate, (audio * 32767).astype(np.int16))
    return font
