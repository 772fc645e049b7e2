"""Where the shipped models are: ``models/`` of a checkout, or the folders the environment names.

``E2M_MODELS_DIR`` replaces the whole ``models/`` folder (it must hold ``planner/`` and
``figaro-compact/``); ``E2M_PLANNER_DIR`` and ``E2M_FIGARO_DIR`` replace one model each and win
over ``E2M_MODELS_DIR``. Nothing here imports torch: :func:`missing_models` is cheap enough for
the daemon's startup check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: ``models/`` next to the package in a checkout.
CHECKOUT_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
PLANNER_NAME = "planner"
FIGARO_NAME = "figaro-compact"
#: Files each model folder must hold to be usable.
PLANNER_FILES = (
    "config.json",
    "note_density.safetensors",
    "mean_velocity.safetensors",
    "mean_pitch.safetensors",
    "mean_duration.safetensors",
    "instruments_chords.safetensors",
)
FIGARO_FILES = ("config.json",)


class ModelsMissing(FileNotFoundError):
    """The shipped models are not where they should be; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class ModelPaths:
    """The two model folders the pipeline loads."""

    planner: Path
    figaro: Path


def models_dir() -> Path:
    """The ``models/`` folder: ``$E2M_MODELS_DIR`` or the checkout's."""
    override = os.environ.get("E2M_MODELS_DIR")
    return Path(override).expanduser() if override else CHECKOUT_MODELS_DIR


def model_paths(root: str | os.PathLike | None = None) -> ModelPaths:
    """Where the planner and the FIGARO decoder are (``root`` replaces ``models/``)."""
    base = Path(root).expanduser() if root is not None else models_dir()
    planner = os.environ.get("E2M_PLANNER_DIR") if root is None else None
    figaro = os.environ.get("E2M_FIGARO_DIR") if root is None else None
    return ModelPaths(
        planner=Path(planner).expanduser() if planner else base / PLANNER_NAME,
        figaro=Path(figaro).expanduser() if figaro else base / FIGARO_NAME,
    )


def _figaro_weights_present(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() or any(folder.glob("model*.safetensors"))


def missing_models(paths: ModelPaths | None = None) -> list[str]:
    """What is missing, one entry per problem (empty when both models are there)."""
    paths = paths or model_paths()
    problems = []
    absent = [name for name in PLANNER_FILES if not (paths.planner / name).is_file()]
    if absent:
        problems.append(f"planner: {paths.planner} lacks {', '.join(absent)}")
    absent = [name for name in FIGARO_FILES if not (paths.figaro / name).is_file()]
    if absent or not _figaro_weights_present(paths.figaro):
        problems.append(f"FIGARO decoder: {paths.figaro} lacks {', '.join(absent) or 'model.safetensors'}")
    return problems


def require_models(paths: ModelPaths | None = None) -> ModelPaths:
    """``paths`` (default: :func:`model_paths`) if both models are there, else :class:`ModelsMissing`."""
    paths = paths or model_paths()
    problems = missing_models(paths)
    if problems:
        raise ModelsMissing(
            "models not found (" + "; ".join(problems) + "); run `e2m-live doctor` for how to install them, "
            "or point E2M_MODELS_DIR at a folder holding planner/ and figaro-compact/"
        )
    return paths
