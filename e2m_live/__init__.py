"""e2m-live: a live-performance emotion-to-music engine built on FIGARO."""

import contextlib
import io
import os

__version__ = "0.1.0"

# OpenMP reads OMP_WAIT_POLICY once, when it is first loaded (by libfluidsynth through pretty_midi,
# or by torch). Spinning waits made two-thread decoding ~10x slower on a busy two-core machine
# (docs/figaro.md), so passive waiting is the default, set before any of our imports can load
# OpenMP. An explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _import_pyfluidsynth_quietly() -> None:
    # pyfluidsynth prints "'fluidsynth' was found at ..." to *stdout* on import whenever $CI is
    # set, and pretty_midi imports it; that line would corrupt our commands' JSON output. Import
    # it once here with stdout captured (later imports come from the module cache).
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
        import fluidsynth  # noqa: F401


if os.environ.get("CI"):
    _import_pyfluidsynth_quietly()
