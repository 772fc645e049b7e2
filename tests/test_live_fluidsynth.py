"""FluidSynth output renders real audio (no sound card needed: samples are pulled)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from e2m_live.live.clock import InternalClock
from e2m_live.live.outputs import FluidSynthOutput, OutputError, OutputSet, find_soundfont
from e2m_live.live.player import PlannedBar, Player
from e2m_live.music import Bar, Note

pytestmark = pytest.mark.skipif(find_soundfont() is None, reason="no soundfont installed")


def _rms(samples) -> float:
    return float(np.sqrt(np.mean(np.asarray(samples, dtype=np.float64) ** 2)))


def test_note_renders_non_silent_audio_and_note_off_decays():
    synth = FluidSynthOutput(driver=None)
    try:
        assert _rms(synth.render(4800)) < 1.0
        synth.send((0xC0, 0), 0.0)
        synth.send((0x90, 60, 110), 0.0)
        sounding = _rms(synth.render(9600))
        synth.send((0x80, 60, 0), 0.0)
        synth.send((0xB0, 120, 0), 0.0)  # all sound off
        synth.render(9600)
        after = _rms(synth.render(4800))
    finally:
        synth.close()
    assert sounding > 200, sounding
    assert after < sounding / 20


def test_player_drives_fluidsynth_drums_and_melody():
    synth = FluidSynthOutput(driver=None)
    bar = Bar([Note(36, 120, 0.0, 0.5, 0, True), Note(64, 110, 0.0, 1.0, 0)], 4, 4)

    class Repeat:
        def next_bar(self):
            return PlannedBar(bar)

    player = Player(InternalClock(), OutputSet([synth]), Repeat(), tempo=480.0, realtime=False)
    player.start_thread()
    player.play()
    time.sleep(0.2)
    try:
        assert _rms(synth.render(9600)) > 200
    finally:
        player.shutdown()
        synth.close()


def test_missing_soundfont_is_a_clear_error(tmp_path):
    with pytest.raises(OutputError, match="no soundfont"):
        FluidSynthOutput(tmp_path / "missing.sf2")


def test_file_audio_driver_writes_a_non_silent_wav(tmp_path):
    import wave

    path = tmp_path / "out.wav"
    synth = FluidSynthOutput(driver="file", file_name=str(path))
    synth.send((0x90, 60, 110), 0.0)
    time.sleep(0.4)
    synth.send((0x80, 60, 0), 0.0)
    synth.close()
    with wave.open(str(path)) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    assert len(samples) > 0 and _rms(samples) > 100


def test_unknown_audio_driver_is_a_clear_error():
    with pytest.raises(OutputError, match="audio driver 'nonexistent'"):
        FluidSynthOutput(driver="nonexistent")
