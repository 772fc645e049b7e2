"""The live model generator with and without its real-time density cap: notes and seconds a bar.

    .venv/bin/python benchmarks/realtime_density.py          # 6 bars of three bands, cap off then on

One thread, the shipped weights, the same plan and decoder seeds for both runs; each bar's note count
and the wall time it took, against the time the bar lasts at its tempo (a bar that takes longer than
it lasts makes the player repeat bars). See ``e2m_live/generators/realtime.py`` and docs/live.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BANDS = (
    {"energy": 0.8, "valence": 0.7, "danceability": 0.8, "instrumentalness": 0.5, "tempo": 132},
    {"energy": 0.9, "valence": 0.2, "danceability": 0.5, "instrumentalness": 0.2, "tempo": 144},
    {"energy": 0.5, "valence": 0.6, "danceability": 0.6, "instrumentalness": 0.2, "tempo": 120},
)


def run(realtime: bool, bars: int = 6) -> None:
    import torch

    from e2m_live.features import EmotionFeatures
    from e2m_live.generators.model import ModelGenerator

    torch.set_num_threads(1)
    generator = ModelGenerator(threads=1, warm_start=False, ensemble_seed=3, realtime_density=realtime)
    generator.pipeline  # noqa: B018 - load before timing
    for band in BANDS:
        features = EmotionFeatures(**band)
        lasts = 4 * 60.0 / features.tempo
        made, started, cells = generator.generate(features, seed=5), time.monotonic(), []
        for number, bar in enumerate(made, start=1):
            now = time.monotonic()
            cells.append(f"{len(bar.notes)} notes {now - started:.2f} s")
            started = now
            if number == bars:
                break
        made.close()
        print(
            f"cap {'on ' if realtime else 'off'} energy {features.energy:.1f} {features.tempo:.0f} BPM "
            f"(bar lasts {lasts:.2f} s, rate {generator.rate.tokens_per_second:.0f} tok/s): "
            + ", ".join(cells)
        )


if __name__ == "__main__":
    run(False)
    run(True)
