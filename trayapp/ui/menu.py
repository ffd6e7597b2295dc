"""Copies a :class:`~trayapp.ui.model.MenuModel` onto a QMenu, updating actions in place.

Actions are keyed by ``MenuItem.key``. An update only sets properties that changed; actions are
created or deleted only when keys appear or disappear (charms or accounts added or removed), and
then inserted at the right position. Some Linux tray hosts (StatusNotifier/dbusmenu bridges) break
when a visible menu is rebuilt, and rebuilding also loses hover and keyboard focus.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QMenu, QWidget

from trayapp.ui.icons import state_icon
from trayapp.ui.model import IconState, MenuItem, MenuModel


class MenuBinder:
    def __init__(self, menu: QMenu, on_command: Callable[[str], None]) -> None:
        self.menu = menu
        self._on_command = on_command
        self._actions: dict[str, QAction] = {}
        self._menus: dict[str, QMenu] = {}
        self._commands: dict[str, str | None] = {}
        self._icons: dict[str, str] = {}
        self.created = 0  # counters for tests and the bench: proof of in-place updates
        self.removed = 0

    def action(self, key: str) -> QAction | None:
        return self._actions.get(key)

    def submenu(self, key: str) -> QMenu | None:
        return self._menus.get(key)

    def apply(self, model: MenuModel) -> None:
        self._apply_level(self.menu, model.items)

    def _apply_level(self, menu: QMenu, items: Sequence[MenuItem]) -> None:
        # Linear in the items: the level's action list is read from Qt once and mirrored here
        # while actions move (QWidget.actions() builds a new list on every call; calling it per
        # item made a refresh quadratic, 50-85 ms at 200 charms, issue 17).
        wanted = {i.key for i in items}
        current: list[QAction] = []
        for act in menu.actions():
            key = act.data()
            if isinstance(key, str) and key not in wanted:
                # Remove actions of this level whose key disappeared.
                self._forget(key)
                menu.removeAction(act)
                act.deleteLater()
                self.removed += 1
            else:
                current.append(act)
        for index, item in enumerate(items):
            found = self._actions.get(item.key)
            act = found if found is not None else self._create(menu, item)
            if index >= len(current) or current[index] is not act:
                # New, or a sibling was inserted before it: move it into place.
                if found is not None and any(a is act for a in current):
                    menu.removeAction(act)
                    current = [a for a in current if a is not act]
                before = current[index] if index < len(current) else None
                if before is None:
                    menu.addAction(act)
                    current.append(act)
                else:
                    menu.insertAction(before, act)
                    current.insert(index, act)
            self._update(act, item)
            if item.children is not None:
                self._apply_level(self._menus[item.key], item.children)

    def _create(self, parent: QMenu, item: MenuItem) -> QAction:
        if item.children is not None:
            sub = QMenu(item.text, parent)
            self._menus[item.key] = sub
            act = sub.menuAction()
        else:
            act = QAction(item.text, parent)
            act.setSeparator(item.separator)
            act.triggered.connect(lambda _checked=False, k=item.key: self._fire(k))
        act.setData(item.key)
        if item.bold:
            font = act.font()
            font.setBold(True)
            act.setFont(font)
        self._actions[item.key] = act
        self.created += 1
        return act

    def _forget(self, key: str) -> None:
        self._actions.pop(key, None)
        self._commands.pop(key, None)
        self._icons.pop(key, None)
        sub = self._menus.pop(key, None)
        if sub is not None:
            for child in sub.actions():
                ck = child.data()
                if isinstance(ck, str):
                    self._forget(ck)
            sub.deleteLater()

    def _fire(self, key: str) -> None:
        command = self._commands.get(key)
        if command:
            self._on_command(command)

    def _update(self, act: QAction, item: MenuItem) -> None:
        self._commands[item.key] = item.command
        if act.text() != item.text:
            act.setText(item.text)
            sub = self._menus.get(item.key)
            if sub is not None:
                sub.setTitle(item.text)
        if act.isEnabled() != item.enabled:
            act.setEnabled(item.enabled)
        if act.isVisible() != item.visible:
            act.setVisible(item.visible)
        if act.isCheckable() != item.checkable:
            act.setCheckable(item.checkable)
        if item.checkable and act.isChecked() != item.checked:
            act.setChecked(item.checked)
        if act.toolTip() != item.tooltip and item.tooltip:
            act.setToolTip(item.tooltip)
        if self._icons.get(item.key, "") != item.icon:
            self._icons[item.key] = item.icon
            act.setIcon(state_icon(IconState(item.icon)) if item.icon else QIcon())


def new_menu(parent: QWidget | None = None) -> QMenu:
    menu = QMenu(parent)
    menu.setToolTipsVisible(True)
    return menu
