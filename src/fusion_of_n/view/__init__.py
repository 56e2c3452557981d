"""``fusion-of-n view``: generate outputs in the browser, with the fused answer attributed to its
candidates. :func:`create_view_app` builds the aiohttp application (:mod:`.app`) over an index of each
records file (:mod:`.index`: byte offsets and the listed fields, never the data whole), text search
(:mod:`.search`), eval verdicts (:mod:`.evals`) and the record view (:mod:`.detail`); the page is
package data (``static/``: plain HTML, CSS and JavaScript, no CDN)."""

from __future__ import annotations

from .app import create_view_app
from .index import RecordsFile
from .viewer import Query, Viewer

__all__ = ["Query", "RecordsFile", "Viewer", "create_view_app"]
