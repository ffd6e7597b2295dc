"""Cells and collections: where a pattern keeps what it remembers and what it synced.

A :class:`Cell` is one named, typed value (a cursor, a token, a counter); ``ctx.cell(slot)``
returns the one bound to a declared slot. A :class:`DerivedCell` is a read-only view computed
from other cells: writing through one raises :class:`ReadOnlyCellError`, never silently does
nothing. A :class:`Collection` is a keyed set of JSON items (``upsert``, ``delete``, ``items``)
that ``ctx.collection(name)`` opens. Writes that belong together go in one
``with ctx.transaction():`` block.
"""

from __future__ import annotations

from trayapp.core.cells import Cell, DerivedCell
from trayapp.core.errors import ReadOnlyCellError
from trayapp.core.store import Collection

__all__ = ["Cell", "Collection", "DerivedCell", "ReadOnlyCellError"]
