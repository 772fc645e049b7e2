"""The daemon's configuration: the [features] table takes the feature schema's keys and names."""

from __future__ import annotations

import dataclasses

import pytest

from e2m_live.features import FEATURES, MOODS
from e2m_live.live.config import ConfigError, LiveConfig, build_config


def test_features_table_takes_the_schema_keys_names_included() -> None:
    config = build_config({"mood": "sad", "features": {"key": "F#", "mode": "major", "energy": 0.9}})
    features = config.starting_features()
    assert (features.key, features.mode, features.energy) == (6, 1, 0.9)
    assert features.valence == MOODS["sad"].valence


@pytest.mark.parametrize(
    ("table", "why"),
    [
        ({"tempo": 300}, "features: tempo must be a number in 40..240"),
        ({"key": "H"}, "features: key: cannot parse 'H'"),
        ({"brightness": 0.5}, "features: unknown feature"),
    ],
)
def test_bad_features_name_the_key(table: dict, why: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_config({"features": table})
    assert str(error.value).startswith(why)


def test_help_lists_the_schema() -> None:
    meta = {f.name: f.metadata for f in dataclasses.fields(LiveConfig)}
    assert all(name in meta["features"]["help"] for name in FEATURES)
    assert "40..240" in meta["tempo"]["help"]
