"""Everything that imports Qt: the tray icon, its menu, notifications and windows.

Entry point: :func:`trayapp.ui.app.main`. The pure parts (``model``, ``notify_policy``,
``accounts``, ``autostart``, ``demo``, ``prefs``) import no Qt and are tested without a display.
See docs/tray.md.
"""
