"""Controller patches generated from the daemon's OSC address table.

``render_all()`` returns every file (name -> bytes), ``write_all(folder)`` writes them and
``stale_files(folder)`` lists the ones that differ from what the generator would write. The
output is deterministic: the same table always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from e2m_live.patches.layout import Layout, LayoutError, build_layout
from e2m_live.patches.maxmsp import render_maxpat
from e2m_live.patches.openstage import render_session
from e2m_live.patches.puredata import render_pd
from e2m_live.patches.readme import render_readme
from e2m_live.patches.touchosc import render_tosc

__all__ = ["FILES", "Layout", "LayoutError", "build_layout", "render_all", "stale_files", "write_all"]

#: File name -> renderer; text renderers are encoded as UTF-8.
FILES: dict[str, Callable[[Layout], str | bytes]] = {
    "e2m-live.maxpat": render_maxpat,
    "e2m-live.pd": render_pd,
    "e2m-live.tosc": render_tosc,
    "e2m-live.json": render_session,
    "README.md": render_readme,
}


def render_all(layout: Layout | None = None) -> dict[str, bytes]:
    """Every controller file, rendered from ``layout`` (default: the daemon's address table)."""
    layout = layout or build_layout()
    rendered = {}
    for name, render in FILES.items():
        content = render(layout)
        rendered[name] = content.encode("utf-8") if isinstance(content, str) else content
    return rendered


def write_all(folder: str | Path, layout: Layout | None = None) -> list[Path]:
    """Write every file into ``folder`` (created if missing); returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in render_all(layout).items():
        path = folder / name
        path.write_bytes(content)
        paths.append(path)
    return paths


def stale_files(folder: str | Path, layout: Layout | None = None) -> list[str]:
    """Names of the files in ``folder`` that are missing or differ from the generator's output."""
    folder = Path(folder)
    return [
        name
        for name, content in render_all(layout).items()
        if not (folder / name).is_file() or (folder / name).read_bytes() != content
    ]
