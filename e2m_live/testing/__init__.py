"""Support for the tests and the benchmarks: nothing here runs in production.

* :mod:`~e2m_live.testing.load`: a generator that burns CPU per bar (the model's decoding cost).
"""
