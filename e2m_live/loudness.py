"""Loudness as level: the requested dB scale the decoded velocities.

The planner steers each bar's mean-velocity bin from the features, but a bin is coarse and the
re-estimated level also moves with how many instruments play, so on its own the loudness fader
was barely audible (Spearman 0.3 between requested and re-estimated loudness). The pipeline
therefore also scales every decoded velocity by the gain the requested loudness asks for, with
General MIDI's recommended velocity curve, gain in dB = 40 log10(velocity / 127): a change of
``d`` dB is a velocity factor ``10 ** (d / 40)``. At :data:`REFERENCE_DB` the decoded velocities stay
as they are; the tokens the decoder keeps for priming are never changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from e2m_live.music import Note

#: Spotify's median loudness over the report's 1,248 seed tracks (-7.37 dB): velocities unchanged.
REFERENCE_DB = -7.4
#: dB per decade of MIDI velocity (General MIDI's curve).
DB_PER_VELOCITY_DECADE = 40.0


def velocity_gain(loudness_db: float) -> float:
    """The factor on MIDI velocities for a requested loudness in dB (1 at :data:`REFERENCE_DB`)."""
    return float(10.0 ** ((float(loudness_db) - REFERENCE_DB) / DB_PER_VELOCITY_DECADE))


def scale_velocities(notes: Iterable[Note], gain: float) -> list[Note]:
    """``notes`` with their velocities times ``gain``, rounded and kept in 1..127."""
    if gain == 1.0:
        return list(notes)
    return [dataclasses.replace(n, velocity=min(127, max(1, round(n.velocity * gain)))) for n in notes]
