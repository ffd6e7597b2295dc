"""The Qt-free engine: cells and store, patterns and charms, scheduler, status.

Nothing under ``trayapp.core`` may import Qt: the same engine runs headless under plain asyncio
and inside the tray under qasync.
"""
