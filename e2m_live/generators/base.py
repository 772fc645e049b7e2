"""What a section generator is: the protocol the engine's worker drives, and the section length."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from e2m_live.arrangement import Arrangement
from e2m_live.features import EmotionFeatures
from e2m_live.music import Bar

SECTION_BARS = 12


class SectionGenerator(Protocol):
    """Makes music one 12-bar section at a time.

    A generator that takes a while per bar may also have an ``interrupt`` attribute (a callable or
    ``None``): the generation worker sets it to "a newer request is waiting", and the generator then
    ends the section where it is, without finishing the bar it is making (the model generator does).
    """

    def generate(
        self,
        features: EmotionFeatures,
        *,
        prime: Bar | None = None,
        seed: int | None = None,
        arrangement: Arrangement | None = None,
    ) -> Iterator[Bar]:
        """Yield the bars of the next section one by one, as soon as each is ready.

        ``prime`` is the bar being played when the request was made: the section continues
        from it. Bars are numbered ``index = 0..11`` within the section. ``arrangement``
        (``None``: the default :class:`Arrangement`) says which instruments may play.
        """
        ...


class GeneratorUnavailable(RuntimeError):
    """A generator cannot be created here (e.g. its weights are missing); says how to fix it."""
