"""Copies a :class:`~trayapp.ui.model.MenuModel` onto a QMenu, updating actions in place.

Actions are keyed by ``MenuItem.key``. An update only sets properties that changed; actions are
created or deleted only when keys appear or disappear (charms or accounts added or removed), and
then inserted at the right position. Some Linux tray hosts (StatusNotifier/dbusmenu bridges) break
when a visible menu is rebuilt, and rebuilding also loses hover and keyboard focus.

While a menu is open, nothing moves under the pointer: an update that would add, remove,
reorder, show or hide entries of an open menu (or submenu) changes only what the existing
entries say (text, icon, enabled, checked: a charm's live status and progress keep updating);
the entries of a charm removed meanwhile are greyed out. The rest waits: :attr:`MenuBinder.deferred`
tells the owner to apply the model again once the menu has closed (issue: a click aimed at
"Quit" hit the entry that a charm added in the background had pushed into its place).

An item equal to the one applied last time under its key (usually the very same object:
:class:`~trayapp.ui.model.MenuBuilder` reuses unchanged charm entries) is skipped with its whole
submenu, without asking Qt anything: a refresh after one charm changed looks at the top level
and that charm's entry only (issue 17.6).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from PySide6.QtCore import QCoreApplication, QEvent, QTimer
from PySide6.QtGui import QAction, QHideEvent, QIcon, QResizeEvent, QShowEvent
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
        self._applied: dict[str, MenuItem] = {}  # what each action shows now
        self.created = 0  # counters for tests and the bench: proof of in-place updates
        self.removed = 0
        self.visited = 0  # items compared with what their action shows (skipped ones too)
        self.updated = 0  # items whose action was brought up to date (compared with Qt)
        self.writes = 0  # Qt property writes (setText, setVisible, ...)
        # The rows each level shows: (key, visible) in order; "" is the top level, a
        # submenu's level is its item's key.
        self._shapes: dict[str, tuple[tuple[str, bool], ...]] = {}
        self.deferred = False  # the last apply left rows of an open menu for after it closes
        self._latest: MenuModel | None = None
        menu.aboutToHide.connect(self._closing)

    def action(self, key: str) -> QAction | None:
        return self._actions.get(key)

    def submenu(self, key: str) -> QMenu | None:
        return self._menus.get(key)

    def apply(self, model: MenuModel) -> None:
        self._latest = model
        self.deferred = False
        self._apply_level(self.menu, "", model.items)

    def _closing(self) -> None:
        """A menu or submenu is closing: once it has, apply what it held back."""
        if self.deferred:
            QTimer.singleShot(0, self.menu, self._catch_up)

    def _catch_up(self) -> None:
        if self.deferred and self._latest is not None:
            self.apply(self._latest)  # a menu still open keeps holding its rows back

    def _apply_level(self, menu: QMenu, level: str, items: Sequence[MenuItem]) -> bool:
        """Bring one menu level up to date; False if an open menu held some of it back."""
        shape = tuple((i.key, i.visible) for i in items)
        if shape != self._shapes.get(level) and menu.isVisible() and level in self._shapes:
            self._apply_in_place(menu, items)  # open: rows stay where the pointer aims
            self.deferred = True
            return False
        self._shapes[level] = shape
        complete = True
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
            self.visited += 1
            applied = self._applied.get(item.key)
            if applied is not None and not item.checkable and (applied is item or applied == item):
                continue  # shows this already, submenu included
            self._update(act, item)
            if item.children is None or self._apply_level(
                self._menus[item.key], item.key, item.children
            ):
                self._applied[item.key] = item
            else:
                self._applied.pop(item.key, None)  # its submenu held rows back: visit again
                complete = False
        return complete

    def _apply_in_place(self, menu: QMenu, items: Sequence[MenuItem]) -> None:
        """Update the rows an open menu shows without adding, removing, showing or hiding any."""
        wanted = {i.key: i for i in items}
        for act in menu.actions():
            key = act.data()
            if not isinstance(key, str):
                continue
            item = wanted.get(key)
            if item is None:
                # Gone (a charm removed): greyed out where it is until the menu closes.
                if act.isEnabled():
                    act.setEnabled(False)
                    self.writes += 1
                self._applied.pop(key, None)  # brought up to date in full next time
                continue
            self.visited += 1
            if item.visible != act.isVisible():
                item = replace(item, visible=act.isVisible())
            applied = self._applied.get(key)
            if applied is not None and not item.checkable and (applied is item or applied == item):
                continue
            self._update(act, item)
            if item.children is None or self._apply_level(self._menus[key], key, item.children):
                self._applied[key] = item
            else:
                self._applied.pop(key, None)

    def _create(self, parent: QMenu, item: MenuItem) -> QAction:
        if item.children is not None:
            sub = SteadyMenu(item.text, parent)
            sub.aboutToHide.connect(self._closing)
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
        self._applied.pop(key, None)
        self._commands.pop(key, None)
        self._icons.pop(key, None)
        self._shapes.pop(key, None)
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
        self.updated += 1
        self._commands[item.key] = item.command
        if act.text() != item.text:
            act.setText(item.text)
            self.writes += 1
            sub = self._menus.get(item.key)
            if sub is not None:
                sub.setTitle(item.text)
        if act.isEnabled() != item.enabled:
            act.setEnabled(item.enabled)
            self.writes += 1
        if act.isVisible() != item.visible:
            act.setVisible(item.visible)
            self.writes += 1
        if act.isCheckable() != item.checkable:
            act.setCheckable(item.checkable)
            self.writes += 1
        if item.checkable and act.isChecked() != item.checked:
            act.setChecked(item.checked)
            self.writes += 1
        if act.toolTip() != item.tooltip and item.tooltip:
            act.setToolTip(item.tooltip)
            self.writes += 1
        if self._icons.get(item.key, "") != item.icon:
            self._icons[item.key] = item.icon
            act.setIcon(state_icon(IconState(item.icon)) if item.icon else QIcon())
            self.writes += 1


class SteadyMenu(QMenu):
    """A QMenu that holds still while open: it never narrows (an entry under the pointer near
    its right edge would slip out from under it), and when it widens (a charm's progress text
    grew) past the screen's right edge it moves left just enough to stay whole: the rows keep
    their height, and a pointer on a row stays on that row."""

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.setMinimumWidth(self.width())  # as wide as it opened, until it closes

    def hideEvent(self, event: QHideEvent) -> None:
        self.setMinimumWidth(0)  # the next opening takes its natural width again...
        # ...once QMenu lays its entries out again: it keeps the entries' rectangles (sized
        # to the minimum width) until something marks them stale, as a style change does.
        QCoreApplication.sendEvent(self, QEvent(QEvent.Type.StyleChange))
        super().hideEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if not self.isVisible():
            return
        self.setMinimumWidth(self.width())
        screen = self.screen()
        if screen is None:
            return
        area = screen.availableGeometry()
        over = self.geometry().right() - area.right()
        if over > 0:
            self.move(max(area.left(), self.x() - over), self.y())


def new_menu(parent: QWidget | None = None) -> QMenu:
    menu = SteadyMenu(parent)
    menu.setToolTipsVisible(True)
    return menu
