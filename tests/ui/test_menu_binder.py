"""The QMenu is updated in place: same QAction objects, created only when charms come and go."""

from __future__ import annotations

from datetime import timedelta

from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QApplication, QMenu

from tests.ui.test_model import GMAIL, NEWS, NOW, Charm, failing, ok
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.status import CharmStatus
from trayapp.ui.menu import MenuBinder, new_menu
from trayapp.ui.model import build_menu, make_snapshot


def test_state_changes_update_actions_in_place(qapp: QApplication) -> None:
    fired: list[str] = []
    menu = new_menu()
    binder = MenuBinder(menu, fired.append)
    binder.apply(build_menu(make_snapshot(NOW, [GMAIL, NEWS], {"news": ok("news")})))
    created = binder.created
    header = binder.action("header")
    news = binder.action("charm:news")
    err = binder.action("charm:news:error")
    assert header is not None and news is not None and err is not None
    assert not err.isVisible()

    bad = failing("news", OutcomeKind.SERVER_ERROR, "HTTP 503")
    binder.apply(build_menu(make_snapshot(NOW, [GMAIL, NEWS], {"news": bad})))
    assert binder.created == created and binder.removed == 0  # nothing rebuilt
    assert binder.action("header") is header and binder.action("charm:news") is news
    assert header.text() == "News is failing: HTTP 503"
    assert news.text().startswith("News")
    assert err.isVisible() and err.text() == "Error: HTTP 503"

    # The submenu's "Sync now" fires its command.
    sync = binder.action("charm:news:sync")
    assert sync is not None
    sync.trigger()
    assert fired == ["sync:news"]


def test_adding_and_removing_a_charm_touches_only_its_actions(qapp: QApplication) -> None:
    menu = new_menu()
    binder = MenuBinder(menu, lambda _c: None)
    blog = Charm("blog", "Blog")
    binder.apply(build_menu(make_snapshot(NOW, [NEWS], {"news": ok("news")})))
    before = binder.created
    keep = binder.action("charm:news")
    binder.apply(build_menu(make_snapshot(NOW, [NEWS, blog], {"news": ok("news")})))
    added = binder.created - before
    charm_keys = build_menu(make_snapshot(NOW, [blog], {})).keys()
    assert added == len([k for k in charm_keys if k.startswith("charm:blog")])
    assert binder.action("charm:news") is keep
    # The new entry sits right after News, before the Accounts separator.
    texts = [a.text() for a in menu.actions() if a.text()]
    assert texts.index("News — synced 2 min ago") + 1 == texts.index("Blog — not synced yet")
    binder.apply(build_menu(make_snapshot(NOW, [NEWS], {"news": ok("news")})))
    assert binder.action("charm:blog") is None and binder.action("charm:blog:sync") is None
    assert binder.removed == 1  # the submenu action; its children went with it
    assert binder.action("charm:news") is keep


def test_relative_times_change_text_not_structure(qapp: QApplication) -> None:
    binder = MenuBinder(new_menu(), lambda _c: None)
    st = {"news": CharmStatus("news", last_success_at=NOW, last_outcome=OutcomeKind.OK)}
    binder.apply(build_menu(make_snapshot(NOW, [NEWS], st)))
    created = binder.created
    binder.apply(build_menu(make_snapshot(NOW + timedelta(minutes=5), [NEWS], st)))
    assert binder.created == created
    assert binder.action("header").text() == "All synced 5 min ago"  # type: ignore[union-attr]


def test_refresh_reads_each_level_once_and_keeps_order(qapp: QApplication) -> None:
    """Linear refresh (issue 17): one QWidget.actions() read per menu level, at any size."""
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QMenu

    from trayapp.ui.model import MenuItem, MenuModel

    class CountingMenu(QMenu):
        reads = 0

        def actions(self) -> list[QAction]:
            CountingMenu.reads += 1
            return super().actions()

    def model(n: int, first: int = 0) -> MenuModel:
        return MenuModel(
            items=tuple(MenuItem(f"c{i}", text=f"Charm {i}") for i in range(first, first + n))
        )

    menu = CountingMenu()
    binder = MenuBinder(menu, lambda _c: None)
    binder.apply(model(200))
    CountingMenu.reads = 0
    binder.apply(model(200))
    assert CountingMenu.reads == 1 and binder.created == 200
    # One charm inserted at the top, one removed at the end: everything else moves in place.
    binder.apply(MenuModel(items=(MenuItem("new", text="New"), *model(199).items)))
    assert [a.data() for a in QMenu.actions(menu)] == ["new", *(f"c{i}" for i in range(199))]
    assert binder.created == 201 and binder.removed == 1


def _rows(menu: QMenu) -> dict[str, tuple[int, int, int, int]]:
    """Where each visible top-level entry is drawn in the menu: key -> (x, y, w, h)."""
    out = {}
    for act in menu.actions():
        if isinstance(act.data(), str) and act.isVisible():
            r = menu.actionGeometry(act)
            out[act.data()] = (r.x(), r.y(), r.width(), r.height())
    return out


def test_an_open_menu_updates_rows_in_place_and_moves_none_until_it_closes(
    qapp: QApplication,
) -> None:
    """A click aimed at "Quit" hit the entry a background charm had pushed into its place: while
    the menu is open, charms added or removed and entries shown or hidden wait for it to close;
    what the existing entries say keeps updating."""
    menu = new_menu()
    binder = MenuBinder(menu, lambda _c: None)
    blog = Charm("blog", "Blog")
    binder.apply(build_menu(make_snapshot(NOW, [NEWS, GMAIL], {"news": ok("news")})))
    menu.popup(QPoint(40, 40))
    qapp.processEvents()
    assert menu.isVisible()
    rows, height = _rows(menu), menu.geometry().height()
    quit_y = rows["quit"][1]

    # A charm joins, one goes, News starts failing (its error line would appear): the words
    # change, the rows stay.
    bad = failing("news", OutcomeKind.SERVER_ERROR, "HTTP 503")
    binder.apply(build_menu(make_snapshot(NOW, [NEWS, blog], {"news": bad})))
    qapp.processEvents()
    now = _rows(menu)
    assert {k: r[1] for k, r in now.items()} == {k: r[1] for k, r in rows.items()}
    assert now["quit"][1] == quit_y and menu.geometry().height() == height
    assert binder.deferred
    assert binder.action("charm:blog") is None  # not yet
    gmail = binder.action("charm:gmail")
    assert gmail is not None and not gmail.isEnabled()  # gone: greyed out where it was
    assert binder.action("header").text() == "News is failing: HTTP 503"  # type: ignore[union-attr]
    news_row = binder.action("charm:news")
    assert news_row is not None and news_row.icon().cacheKey() != 0

    # Closed: what waited is applied, in order.
    menu.hide()
    qapp.processEvents()
    assert not binder.deferred
    assert binder.action("charm:gmail") is None
    texts = [a.text() for a in menu.actions() if a.text()]
    assert texts.index("Blog — not synced yet") == texts.index(news_row.text()) + 1
    menu.popup(QPoint(40, 40))
    qapp.processEvents()
    assert _rows(menu)["charm:blog"][1] == rows["charm:gmail"][1]  # in the place Gmail left
    menu.hide()


def test_an_open_submenu_holds_its_rows_while_the_top_level_updates(qapp: QApplication) -> None:
    menu = new_menu()
    binder = MenuBinder(menu, lambda _c: None)
    blog = Charm("blog", "Blog")
    binder.apply(build_menu(make_snapshot(NOW, [NEWS], {"news": ok("news")})))
    sub = binder.submenu("charm:news")
    assert sub is not None
    sub.popup(QPoint(300, 40))
    qapp.processEvents()
    err = binder.action("charm:news:error")
    assert err is not None and not err.isVisible()
    bad = failing("news", OutcomeKind.SERVER_ERROR, "HTTP 503")
    # The top level is closed: the new charm is added at once; the open submenu waits.
    binder.apply(build_menu(make_snapshot(NOW, [NEWS, blog], {"news": bad})))
    assert binder.action("charm:blog") is not None
    assert not err.isVisible() and binder.deferred
    sub.hide()
    qapp.processEvents()
    assert err.isVisible() and err.text() == "Error: HTTP 503" and not binder.deferred


def test_an_open_menu_never_narrows_and_widens_without_leaving_the_screen(
    qapp: QApplication,
) -> None:
    """A charm's line grows while the menu is open (its progress text): the menu stays whole on
    the screen (it went past the right edge, cut off) and never narrows under the pointer."""
    from trayapp.ui.model import MenuItem, MenuModel

    def model(text: str) -> MenuModel:
        return MenuModel(items=(MenuItem("line", text=text), MenuItem("quit", text="Quit")))

    menu = new_menu()
    binder = MenuBinder(menu, lambda _c: None)
    binder.apply(model("Gmail — synced"))
    screen = menu.screen().availableGeometry()
    menu.popup(QPoint(screen.right() - menu.sizeHint().width() - 4, 40))
    qapp.processEvents()
    opened = menu.geometry()
    rows = _rows(menu)
    assert opened.right() <= screen.right()

    binder.apply(model("Gmail — syncing 1,200 of 3,000 messages, 40% done"))
    qapp.processEvents()
    wide = menu.geometry()
    assert wide.width() > opened.width()
    assert wide.right() <= screen.right() and wide.x() < opened.x()  # moved left to stay whole
    assert wide.y() == opened.y() and {k: r[1] for k, r in _rows(menu).items()} == {
        k: r[1] for k, r in rows.items()
    }

    binder.apply(model("Gmail — synced"))
    qapp.processEvents()
    assert menu.geometry() == wide  # no narrowing while open
    menu.hide()
    qapp.processEvents()
    menu.popup(QPoint(40, 40))
    qapp.processEvents()
    assert menu.width() == opened.width()  # the next opening has its natural width
    menu.hide()
