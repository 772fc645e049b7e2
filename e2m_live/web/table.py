"""The OSC address table as JSON for the browser page, which builds its controls from it."""

from __future__ import annotations

from typing import Any

from e2m_live.arrangement import instrument_name
from e2m_live.features import FEATURE_ORDER, MOODS
from e2m_live.generators.base import SECTION_BARS
from e2m_live.live.addresses import ADDRESSES, Argument, OscAddress


def _argument(arg: Argument) -> dict[str, Any]:
    return {
        "name": arg.name,
        "types": arg.types,
        "low": arg.low,
        "high": arg.high,
        "choices": list(arg.choices),
        "default": arg.default,
        "unit": arg.unit,
        "out_of_range": arg.out_of_range,
    }


def _entry(entry: OscAddress) -> dict[str, Any]:
    extra = {key: value for key, value in entry.extra.items() if key == "quick"}
    if "quick" in extra:
        extra["quick"] = [[label, list(send)] for label, send in extra["quick"]]
    return {
        "address": entry.address,
        "label": entry.label,
        "effect": entry.effect,
        "direction": entry.direction,
        "control": entry.control,
        "group": entry.group,
        "optional_arguments": entry.optional_arguments,
        "repeated": entry.repeated,
        "arguments": [_argument(a) for a in entry.arguments],
        "optional": [_argument(a) for a in getattr(entry, "optional", ())],
        "extra": extra,
    }


def table_json(addresses: tuple[OscAddress, ...] = ADDRESSES) -> dict[str, Any]:
    """Every address (controls and feedback) plus what the page needs to label them: the mood
    presets (to show which one is in force), GM instrument names (typing hints) and the section
    length of the plan strip."""
    return {
        "addresses": [_entry(a) for a in addresses],
        "features": list(FEATURE_ORDER),
        "moods": {name: {n: getattr(f, n) for n in FEATURE_ORDER} for name, f in MOODS.items()},
        "instruments": [*(instrument_name(p) for p in range(128)), "drums"],
        "section_bars": SECTION_BARS,
    }
