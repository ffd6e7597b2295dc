"""The translation layer: every user-visible string goes through :func:`tr`.

``tr`` is Qt-free to call (the menu model and notification policy are pure Python), and maps to
``QCoreApplication.translate("", text)`` once :func:`install` has run in the app (the empty
context is what ``pyside6-lupdate`` records for these module-level calls, so a catalog it makes
works as is), so a translation is a ``.qm`` file dropped into a translations folder, no code
change:

* ``$TRAYAPP_TRANSLATIONS/trayapp_<locale>.qm`` (e.g. ``trayapp_de.qm``, ``trayapp_pt_BR.qm``),
* ``resources/translations/trayapp_<locale>.qm`` (shipped with the app),

plus Qt's own ``qtbase_<locale>.qm`` for its standard buttons and dialogs. Strings with values
are written with named fields, ``tr("Remove {name}?").format(name=...)``, so translators can
move them. Widgets use ``self.tr(...)`` (context = their class), which lupdate also finds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

CONTEXT = ""  # what pyside6-lupdate records for the module-level tr("...") calls
TRANSLATIONS_ENV = "TRAYAPP_TRANSLATIONS"

_translate: Callable[[str, str], str] | None = None
_installed: list[object] = []  # keep the QTranslators alive
_generation = 0  # see generation()


def QT_TR_NOOP(text: str) -> str:  # the upper-case name is the one pyside6-lupdate looks for
    """Mark ``text`` for the catalog where it is defined (a table of sentences); :func:`tr`
    translates it where it is shown. lupdate only sees literals inside ``tr(...)`` or this."""
    return text


def tr(text: str) -> str:
    """``text`` in the user's language when a translation is installed, else as written."""
    fn = _translate
    return fn(CONTEXT, text) if fn is not None else text


def generation() -> int:
    """A number that changes whenever :func:`install` or :func:`uninstall` runs, so views that
    keep translated text know to build it again."""
    return _generation


def translation_dirs() -> list[Path]:
    from trayapp.ui.resources import resources_dir

    dirs: list[Path] = []
    if env := os.environ.get(TRANSLATIONS_ENV):
        dirs.append(Path(env))
    base = resources_dir()
    if base is not None:
        dirs.append(base / "translations")
    return dirs


def install(locale_name: str | None = None) -> list[str]:
    """Load the translations for the user's locale into the running QCoreApplication.

    Returns the files loaded (empty when there is none for this locale: English is the source).
    """
    global _translate, _generation
    from PySide6.QtCore import QCoreApplication, QLibraryInfo, QLocale, QTranslator

    app = QCoreApplication.instance()
    if app is None:
        return []
    locale = QLocale(locale_name) if locale_name else QLocale()
    loaded: list[str] = []
    for folder in translation_dirs():
        translator = QTranslator(app)
        if translator.load(locale, "trayapp", "_", str(folder), ".qm"):
            app.installTranslator(translator)
            _installed.append(translator)
            loaded.append(translator.filePath())
            break
    qt = QTranslator(app)
    if qt.load(locale, "qtbase", "_", QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)):
        app.installTranslator(qt)
        _installed.append(qt)
        loaded.append(qt.filePath())
    _translate = QCoreApplication.translate
    _generation += 1
    if loaded:
        log.info("translations loaded: %s", ", ".join(loaded))
    return loaded


def uninstall() -> None:
    """Remove what :func:`install` loaded (tests; a language switch would reinstall)."""
    global _translate, _generation
    from PySide6.QtCore import QCoreApplication, QTranslator

    app = QCoreApplication.instance()
    for translator in _installed:
        if app is not None and isinstance(translator, QTranslator):
            app.removeTranslator(translator)
    _installed.clear()
    _translate = None
    _generation += 1
