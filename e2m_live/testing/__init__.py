"""Support for the tests and the benchmarks: nothing here runs in production.

* :mod:`~e2m_live.testing.jack`: a private JACK server, a MIDI recorder client, a MIDI clock master client.
* :mod:`~e2m_live.testing.daemon`: ``e2m-live serve`` as a subprocess; :func:`wait_until`.
* :mod:`~e2m_live.testing.follow`: a clock master's schedules, and how the daemon followed them.
* :mod:`~e2m_live.testing.plans`: description plans walked the way the planner walks the grammar.
* :mod:`~e2m_live.testing.load`: a generator that burns CPU per bar (the model's decoding cost).
"""
