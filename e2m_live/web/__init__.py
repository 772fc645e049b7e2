"""The browser control surface: HTTP + WebSocket, served by the daemon (``e2m-live serve``).

:class:`~e2m_live.web.server.WebSurface` runs an aiohttp server on its own thread and event loop;
the page (``static/``: plain HTML, CSS and JavaScript, no build step) builds its controls from the
OSC address table served as JSON (:func:`~e2m_live.web.table.table_json`), so every address of
the table appears on it. See ``docs/web.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from e2m_live.web.server import WebSurface
    from e2m_live.web.table import table_json

__all__ = ["WebSurface", "table_json"]


def __getattr__(name: str) -> Any:
    # Lazy: the generation API's worker process imports e2m_live.web.jobs and must not pay for aiohttp.
    if name == "WebSurface":
        from e2m_live.web.server import WebSurface

        return WebSurface
    if name == "table_json":
        from e2m_live.web.table import table_json

        return table_json
    raise AttributeError(name)
