"""The command line's one error type.

A command raises :class:`UsageError` for anything the user can fix (a bad flag, a missing file);
``e2m_live.cli.main`` prints it as one line and exits with code 2. The library never raises it:
its own errors (``FeatureError``, ``PipelineError``, ...) are turned into usage errors here, in
the command layer.
"""

from __future__ import annotations


class UsageError(Exception):
    """A user error: printed as one line, exit code 2."""
