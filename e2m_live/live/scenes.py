"""Scenes: snapshots of the ten features in numbered slots, recalled or morphed live.

A :class:`SceneBook` lives as long as the daemon; given a path it loads the scenes from that JSON
file at startup and writes the file again (atomically) whenever a scene is stored, so a set can be
prepared before a gig. File format: ``{"scenes": {"0": {<the ten features>}, ...}}``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from e2m_live.features import FEATURE_ORDER, INTEGER_FIELDS, EmotionFeatures, FeatureError


class SceneError(ValueError):
    """A scene slot is empty or out of range, or the scenes file cannot be read."""


def morph(a: EmotionFeatures, b: EmotionFeatures, x: float) -> EmotionFeatures:
    """The features ``x`` of the way from ``a`` (0) to ``b`` (1): continuous ones in between, the
    whole-number ones (key, mode, time signature) from ``a`` below 0.5 and from ``b`` from 0.5."""
    x = min(1.0, max(0.0, float(x)))
    values = {}
    for name in FEATURE_ORDER:
        start, end = getattr(a, name), getattr(b, name)
        values[name] = (start if x < 0.5 else end) if name in INTEGER_FIELDS else start + (end - start) * x
    return EmotionFeatures(**values)


class SceneBook:
    """Scene slots 0..``slots``-1 (thread-safe)."""

    def __init__(self, slots: int, path: str | os.PathLike | None = None) -> None:
        self.slots = slots
        self.path = Path(path) if path else None
        self.current = -1  # the scene last stored or recalled
        self._scenes: dict[int, EmotionFeatures] = {}
        self._lock = threading.Lock()
        if self.path is not None and self.path.exists():
            self._scenes = self._read(self.path)

    def _read(self, path: Path) -> dict[int, EmotionFeatures]:
        try:
            data = json.loads(path.read_text())
            scenes = {int(slot): EmotionFeatures.from_dict(values) for slot, values in data["scenes"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, FeatureError) as error:
            raise SceneError(f"cannot read scenes from {path}: {error}") from error
        bad = [slot for slot in scenes if not 0 <= slot < self.slots]
        if bad:
            raise SceneError(f"{path}: scene slots must be 0..{self.slots - 1}, got {bad}")
        return scenes

    def _check(self, slot: int) -> None:
        if not 0 <= slot < self.slots:
            raise SceneError(f"scene slots are 0..{self.slots - 1}, got {slot}")

    def store(self, slot: int, features: EmotionFeatures) -> None:
        """Keep ``features`` in ``slot`` (and write the file, if any)."""
        self._check(slot)
        with self._lock:
            self._scenes[slot] = features
            self.current = slot
            if self.path is not None:
                data = {"scenes": {str(k): v.to_dict() for k, v in sorted(self._scenes.items())}}
                partial = self.path.with_name(self.path.name + ".partial")
                partial.write_text(json.dumps(data, indent=2) + "\n")
                partial.replace(self.path)

    def get(self, slot: int) -> EmotionFeatures:
        """The scene in ``slot``; :class:`SceneError` if it is empty."""
        self._check(slot)
        with self._lock:
            if slot not in self._scenes:
                stored = ", ".join(map(str, sorted(self._scenes))) or "none"
                raise SceneError(f"scene {slot} is empty (stored: {stored})")
            return self._scenes[slot]

    def recall(self, slot: int) -> EmotionFeatures:
        features = self.get(slot)
        self.current = slot
        return features

    def stored(self) -> list[int]:
        with self._lock:
            return sorted(self._scenes)
