"""Section generators: emotion features -> the bars of the next 12-bar section.

* :mod:`~e2m_live.generators.base`: what every generator is (:class:`SectionGenerator`, ``SECTION_BARS``).
* :mod:`~e2m_live.generators.registry`: the names ``--generator`` takes (``rules``, ``model``, or an
  import path ``package.module:factory``) and the fallback from ``model`` to ``rules``.
* :mod:`~e2m_live.generators.rules`: :class:`RuleBasedGenerator`, weight-free composition from the features.
* :mod:`~e2m_live.generators.model`: :class:`ModelGenerator`, the planner + FIGARO decoder.
* :mod:`~e2m_live.generators.heap`: keeping the worker process's native heap from growing.

The engine (:mod:`e2m_live.live.engine`) runs the generator in its worker process and knows only the
registry; ``live/`` keeps the transport and the timing.
"""
