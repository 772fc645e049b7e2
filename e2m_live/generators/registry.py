"""The generators ``--generator`` can name, and the fallback from ``model`` to ``rules``.

The engine only knows :class:`~e2m_live.generators.base.SectionGenerator` and picks one by name
(``--generator rules|model``). :class:`~e2m_live.generators.rules.RuleBasedGenerator` needs no
weights: it is the fallback when models are missing and the generator the tests use for speed.
:class:`~e2m_live.generators.model.ModelGenerator` runs the planner + FIGARO decoder.

A name of the form ``package.module:factory`` is imported instead of looked up: that is how the
benchmarks run their CPU-load generator (:data:`e2m_live.testing.load.LOAD_GENERATOR`) without it
being in the production registry. The daemon checks the name and the worker *process* (spawned:
it shares no module state with the daemon) creates the generator from the same string, so the
import must work in both; a registration made at import time in the daemon would not reach it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from e2m_live.generators.base import GeneratorUnavailable, SectionGenerator
from e2m_live.generators.model import ModelGenerator, model_unavailable_reason
from e2m_live.generators.rules import RuleBasedGenerator


@dataclass(frozen=True, slots=True)
class GeneratorEntry:
    """A registered generator: ``check()`` is cheap and returns why it is unavailable (or None)."""

    name: str
    create: Callable[..., SectionGenerator]
    check: Callable[[], str | None]
    description: str


GENERATORS: dict[str, GeneratorEntry] = {}


def register(entry: GeneratorEntry) -> None:
    """Add (or replace) a generator in the registry."""
    GENERATORS[entry.name] = entry


def _imported(name: str) -> GeneratorEntry | str:
    """The entry for an import path ``package.module:factory``, or why there is none."""
    module, _, attribute = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        return f"cannot import generator {name!r}: {error}"
    if not callable(factory):
        return f"{name!r} is not callable"
    return GeneratorEntry(name, factory, lambda: None, f"imported from {module}")


def _entry(name: str) -> GeneratorEntry | str:
    """The entry for ``name`` (registered, or an import path), or why there is none."""
    entry = GENERATORS.get(name)
    if entry is not None:
        return entry
    if ":" in name:
        return _imported(name)
    return f"no generator named {name!r} (known: {', '.join(GENERATORS)}, or package.module:factory)"


def unavailable_reason(name: str) -> str | None:
    """Why generator ``name`` cannot be used here, or None if it can."""
    entry = _entry(name)
    return entry if isinstance(entry, str) else entry.check()


def resolve_generator(name: str, fallback: str = "rules") -> tuple[str, str | None]:
    """The generator to use for ``name``: ``(name, None)`` or ``(fallback, warning)``."""
    reason = unavailable_reason(name)
    if reason is None:
        return name, None
    if name == fallback or unavailable_reason(fallback) is not None:
        raise GeneratorUnavailable(reason)
    return fallback, f"generator {name!r} unavailable ({reason}); falling back to {fallback!r}"


def create_generator(name: str, **options: Any) -> SectionGenerator:
    """Instantiate a generator by name (in the worker process)."""
    entry = _entry(name)
    if isinstance(entry, str):
        raise GeneratorUnavailable(entry)
    reason = entry.check()
    if reason is not None:
        raise GeneratorUnavailable(reason)
    return entry.create(**options)


register(
    GeneratorEntry(
        "rules",
        lambda **options: RuleBasedGenerator(**options),
        lambda: None,
        "rule-based fallback, no weights",
    )
)
register(
    GeneratorEntry(
        "model",
        lambda **options: ModelGenerator(**options),
        model_unavailable_reason,
        "planner LSTMs + FIGARO decoder",
    )
)
