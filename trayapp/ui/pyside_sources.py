"""Keep PySide6's import hook from holding the source text of every module in memory.

PySide6 (6.4 and later, ``shibokensupport/feature.py``) hooks ``import`` to support
``from __feature__ import snake_case``: for every module imported after Qt it asks whether the
module uses PySide6 by searching its source for the word, read with ``inspect.getsource``. That
call goes through :mod:`linecache`, which keeps the whole text of each file, split in lines, for
the life of the process. In the tray that was the source of ~390 modules: about 15 MiB of the
issue 17 gap (``tracemalloc`` attributed it to ``linecache.py``; ``sys._debugmallocstats`` showed
43 -> 28 pymalloc arenas once it was gone).

:func:`install` replaces that check with one that answers the same question from the module
loader's ``get_source`` (the same text, read and dropped), and forgets sources already cached for
files on disk (``linecache`` reads them again if a traceback ever needs them). Nothing changes in
behaviour: the answer is the same, and the app never selects a ``__feature__``. If a PySide6
release moves the hook, :func:`install` returns False and changes nothing;
tests/perf/test_start_imports.py then fails on the number of cached sources.
"""

from __future__ import annotations

import linecache
import sys
from types import ModuleType

import PySide6.QtCore  # noqa: F401  (loads shiboken's import hook, which is patched below)

_FEATURE_MODULE = "shibokensupport.feature"


def _mod_uses_pyside(module: ModuleType) -> bool:
    """Does this module's source mention PySide6? (PySide's own test, without linecache.)"""
    spec = getattr(module, "__spec__", None)
    loader = getattr(spec, "loader", None)
    get_source = getattr(loader, "get_source", None)
    if get_source is None:
        return False  # built-in, extension or frozen module: PySide answers False too
    try:
        source = get_source(module.__name__)
    except (ImportError, OSError, SyntaxError, UnicodeDecodeError):
        return False
    return isinstance(source, str) and "PySide6" in source


def forget_file_sources() -> int:
    """Drop cached sources of files on disk (entries with a modification time); return how many.

    Sources registered without a file (``linecache.lazycache``, generated code) are kept.
    """
    dropped = 0
    for name, entry in list(linecache.cache.items()):
        if len(entry) == 4 and entry[1] is not None:
            del linecache.cache[name]
            dropped += 1
    return dropped


def install() -> bool:
    """Patch PySide6's per-import source check; True if it was found and replaced."""
    feature = sys.modules.get(_FEATURE_MODULE)
    if feature is None or not callable(getattr(feature, "_mod_uses_pyside", None)):
        return False
    setattr(feature, "_mod_uses_pyside", _mod_uses_pyside)  # noqa: B010  (a module's global)
    forget_file_sources()
    return True


INSTALLED = install()
