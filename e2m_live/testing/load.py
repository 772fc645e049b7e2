"""A generator that burns CPU per bar: the model's decoding cost, for benchmarks and timing tests.

It is not in the production registry: ``--generator`` takes it by import path, :data:`LOAD_GENERATOR`
(see :mod:`e2m_live.generators.registry`), which the daemon and its spawned worker both import.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from e2m_live.arrangement import Arrangement
from e2m_live.features import EmotionFeatures
from e2m_live.generators.base import SectionGenerator
from e2m_live.generators.rules import RuleBasedGenerator
from e2m_live.music import Bar

#: ``--generator`` value of the rule generator plus ``seconds_per_bar`` of one-thread matmul per bar
#: (what the benchmarks called ``rules+load``).
LOAD_GENERATOR = "e2m_live.testing.load:rules_with_load"


class CpuLoadGenerator:
    """Wraps a generator and burns CPU per bar (a torch matmul loop on one thread).

    Stands in for the model's decoding cost in benchmarks and timing tests.
    """

    def __init__(self, inner: SectionGenerator, seconds_per_bar: float = 0.2, size: int = 256) -> None:
        self.inner = inner
        self.seconds_per_bar = seconds_per_bar
        self.size = size

    def generate(
        self,
        features: EmotionFeatures,
        *,
        prime: Bar | None = None,
        seed: int | None = None,
        arrangement: Arrangement | None = None,
    ) -> Iterator[Bar]:
        import torch

        torch.set_num_threads(1)
        a = torch.randn(self.size, self.size)
        for bar in self.inner.generate(features, prime=prime, seed=seed, arrangement=arrangement):
            deadline = time.monotonic() + self.seconds_per_bar
            while time.monotonic() < deadline:
                a = torch.tanh(a @ a)
            yield bar


def rules_with_load(seconds_per_bar: float = 0.2, size: int = 256) -> CpuLoadGenerator:
    """The rule-based generator plus a synthetic CPU load per bar (:data:`LOAD_GENERATOR`)."""
    return CpuLoadGenerator(RuleBasedGenerator(), seconds_per_bar=seconds_per_bar, size=size)
