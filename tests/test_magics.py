"""The notebook magics in-process: every magic, option and error.

One ``InteractiveShell.instance()`` (a terminal-less IPython) runs cells the way a
notebook does: ``run_cell`` with history, so execution counts and the
pre/post-run hooks are real. Widget views are built with ``use_widgets = True``
(there is no kernel here, so ``display`` is captured instead), and driven by
calling their buttons' handlers and setting their traits, as a click would.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from conftest import dump_state, execute

pytest.importorskip("IPython")
pytest.importorskip("ipywidgets")

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import dbvers
from dbvers import cli
from dbvers import magics as M
from dbvers.errors import DbversError
from dbvers.render.widgets import DiffView, LogView


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    return InteractiveShell.instance(config=cfg)


class Nb:
    """The shell with dbvers loaded, run from *cwd*; displayed objects are collected."""

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell
        M.load_ipython_extension(shell)
        self.magics: M.DbversMagics = shell.magics_manager.registry["DbversMagics"]
        self.displayed: list[Any] = []
        self.magics.show_view = self.displayed.append  # type: ignore[method-assign]

    def cell(self, source: str) -> Any:
        """Run a cell that must succeed; return its result value."""
        r = self.shell.run_cell(source, store_history=True)
        if r.error_before_exec or r.error_in_exec:
            raise r.error_before_exec or r.error_in_exec
        return r.result

    def fails(self, source: str) -> str:
        """Run a cell that must fail with a UsageError; return its message."""
        r = self.shell.run_cell(source, store_history=True)
        err = r.error_in_exec or r.error_before_exec
        assert isinstance(err, UsageError), repr(err)
        return str(err)

    @property
    def view(self) -> Any:
        return self.displayed[-1]


@pytest.fixture
def nb(shell: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Nb]:
    monkeypatch.chdir(tmp_path)
    n = Nb(shell)
    yield n
    M.unload_ipython_extension(shell)
    for v in n.displayed:
        v.close()


@pytest.fixture
def tracked(nb: Nb, db_path: Path) -> Path:
    """The conftest database, tracked, with the shell in its directory."""
    nb.cell(f"%dbvers init {db_path.name}")
    return db_path


def text(html: str) -> str:
    """What an HTML widget's value reads as."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def cli_message(*argv: str) -> str:
    """The one-line message the CLI gives for *argv*."""
    with pytest.raises(DbversError) as e:
        cli.run(list(argv))
    return str(e.value)


# -- loading ---------------------------------------------------------------------------


def test_load_ext_registers_every_magic(shell: InteractiveShell) -> None:
    r = shell.run_cell("%load_ext dbvers")
    assert r.success
    names = shell.magics_manager.magics["line"]
    for name in ("dbvers", "dbcommit", "dbdiff", "dblog", "dbcheckout"):
        assert name in names, name
    shell.run_cell("%unload_ext dbvers")


def test_help_is_the_docstrings(nb: Nb, capsys: pytest.CaptureFixture[str]) -> None:
    nb.shell.run_cell("%dbcommit?")
    out = capsys.readouterr().out
    assert "Commit the working database" in out
    assert "%dbcommit [-m MSG] [--allow-empty] [--auto [on|off]]" in out
    assert "--auto off" in out
    for name, words in (("dbvers", "%dbvers use PATH"), ("dbdiff", "old → new"),
                        ("dblog", "check out"), ("dbcheckout", "-b NEW")):
        nb.shell.run_cell(f"%{name}?")
        assert words in capsys.readouterr().out, name


# -- %dbvers -----------------------------------------------------------------------------


def test_dbvers_runs_cli_commands(nb: Nb, db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb.cell(f"%dbvers init {db_path.name} -m 'first state'")
    out = capsys.readouterr().out
    assert "Initialized dbvers repository" in out and "first state" in out
    assert nb.magics.db == db_path and nb.magics.store == db_path.parent / ".dbvers"
    execute(db_path, "UPDATE orders SET qty = 7 WHERE id = 1")
    nb.cell("%dbvers status")
    assert "orders" in capsys.readouterr().out
    nb.cell('%dbvers commit -m "qty fix"')
    nb.cell("%dbvers log --oneline")
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(" ", 1)[1] for ln in lines[-2:]] == ["qty fix", "first state"]
    assert nb.cell("%dbvers status") is None  # nothing returned: no Out[] echo


def test_dbvers_help_and_version_do_not_fail(nb: Nb, capsys: pytest.CaptureFixture[str]) -> None:
    nb.cell("%dbvers --help")
    assert "git for SQLite databases" in capsys.readouterr().out
    nb.cell("%dbvers diff --help")
    assert "--skinny" in capsys.readouterr().out
    nb.cell("%dbvers --version")
    assert dbvers.__version__ in capsys.readouterr().out


def test_dbvers_errors_are_the_cli_messages(tracked: Path, nb: Nb, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["checkout", "nosuch"], ["frobnicate"], ["log", "-n", "-1"], ["diff", "a", "b", "c"],
                 ["commit"], ["branch", "-d", "main"]):
        msg = nb.fails("%dbvers " + " ".join(args))
        assert msg == cli_message(*args), args
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "UsageError: unknown revision 'nosuch'" in err


def test_dbvers_bad_quoting(tracked: Path, nb: Nb) -> None:
    assert "cannot parse" in nb.fails('%dbvers commit -m "unterminated')


def test_no_repository(nb: Nb) -> None:
    assert "no dbvers repository found" in nb.fails("%dbvers status")
    assert "no dbvers repository found" in nb.fails("%dbcommit -m x")


def test_use_sets_the_session_repository(nb: Nb, db_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    dbvers.init(db_path)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    assert "no dbvers repository" in nb.fails("%dbvers status")
    nb.cell(f"%dbvers use {db_path}")
    assert f"Using {db_path}" in capsys.readouterr().out
    execute(db_path, "DELETE FROM orders WHERE id = 3")
    c = nb.cell('%dbcommit -m "from elsewhere"')
    assert c.counts["orders"].deletes == 1
    nb.cell("%dbvers log --oneline -n 1")
    assert "from elsewhere" in capsys.readouterr().out
    nb.cell("%dbvers use")
    assert "set with %dbvers use" in capsys.readouterr().out
    # A directory below the database's, and the store directory itself, work too.
    nb.cell(f"%dbvers use {db_path.parent / '.dbvers'}")
    assert nb.magics.db == db_path
    # Explicit --db/--store win over the session's repository.
    other = elsewhere / "other.db"
    sqlite3.connect(other).close()
    nb.cell(f"%dbvers init {other} --store {elsewhere / '.dbvers-other'}")
    assert nb.magics.db == other.resolve()
    nb.cell(f"%dbvers --db {db_path} log --oneline -n 1")
    assert "from elsewhere" in capsys.readouterr().out


def test_use_errors(nb: Nb, tmp_path: Path) -> None:
    assert "no dbvers repository found" in nb.fails(f"%dbvers use {tmp_path / 'nothing.db'}")
    assert nb.fails("%dbvers use a b") == "use takes one PATH: %dbvers use PATH"
    assert "no dbvers repository found" in nb.fails("%dbvers use")


# -- %dbcommit ---------------------------------------------------------------------------


def test_dbcommit_prints_and_returns_the_commit(tracked: Path, nb: Nb, capsys: pytest.CaptureFixture[str]) -> None:
    execute(tracked, "UPDATE orders SET qty = 9 WHERE id = 2; INSERT INTO events VALUES ('x', 1)")
    c = nb.cell('%dbcommit -m "more qty" -m "second paragraph"')
    assert isinstance(c, dbvers.Commit)
    assert c.message == "more qty\n\nsecond paragraph"
    assert c.meta["execution_count"] == nb.shell.execution_count - 1
    out = capsys.readouterr().out
    assert f"[main {c.short_id}] more qty" in out
    assert "orders" in out and "+0 ~1 -0" in out and "events" in out
    assert dbvers.open(tracked).log(n=1)[0].id == c.id


def test_dbcommit_message_defaults_to_the_cell(tracked: Path, nb: Nb) -> None:
    c = nb.cell(f"import sqlite3\ncon = sqlite3.connect({str(tracked)!r})\n"
                "con.execute('DELETE FROM events'); con.commit(); con.close()\n%dbcommit")
    assert c.message.startswith("import sqlite3\ncon = sqlite3.connect(")
    assert "%dbcommit" not in c.message
    execute(tracked, "DELETE FROM orders")
    c = nb.cell("%dbcommit")
    assert c.message == f"notebook cell [{nb.shell.execution_count - 1}]"


def test_dbcommit_errors(tracked: Path, nb: Nb) -> None:
    assert nb.fails('%dbcommit -m "nothing"') == cli_message("commit", "-m", "nothing")
    c = nb.cell('%dbcommit -m "empty on purpose" --allow-empty')
    assert c.counts == {}
    assert "unrecognized arguments" in nb.fails("%dbcommit --bogus")
    assert "invalid choice" in nb.fails("%dbcommit --auto sometimes")
    assert "--auto takes no -m" in nb.fails("%dbcommit --auto -m x")


# -- auto-commit ---------------------------------------------------------------------------


def _con(path: Path) -> str:
    return f"con = sqlite3.connect({str(path)!r}, isolation_level=None)"


def test_auto_commit(tracked: Path, nb: Nb, capsys: pytest.CaptureFixture[str]) -> None:
    repo = dbvers.open(tracked)
    nb.cell("import sqlite3\n" + _con(tracked))
    nb.cell("%dbcommit --auto")
    assert "auto-commit is on for data.db" in capsys.readouterr().out
    start = repo.head.commit

    nb.cell("x = 1 + 1")  # no database change: no commit
    assert repo.head.commit == start

    cell = "con.execute(\"UPDATE orders SET customer = 'ann b' WHERE id = 1\")\n\n"
    nb.cell(cell)
    n = nb.shell.execution_count - 1
    c = repo.log(n=1)[0]
    assert c.message == cell.strip()
    assert c.meta["execution_count"] == n and c.meta["auto"] is True
    assert c.counts["orders"].updates == 1
    assert f"auto-committed {c.short_id} on main: orders +0 ~1 −0" in capsys.readouterr().out

    # A cell that fails after writing: not committed, and the user is told.
    r = nb.shell.run_cell("con.execute('DELETE FROM orders WHERE id = 2')\nraise ValueError('oops')",
                          store_history=True)
    failed = nb.shell.execution_count - 1
    assert not r.success
    assert repo.head.commit == c.id
    assert f"cell [{failed}] failed after writing to data.db" in capsys.readouterr().err
    assert dbvers.open(tracked).status().changes.counts["orders"].deletes == 1

    # The next cell that writes commits both, and says so.
    nb.cell("con.execute('DELETE FROM events')")
    c2 = repo.log(n=1)[0]
    assert c2.meta["includes_failed_cells"] == [failed]
    assert c2.counts["orders"].deletes == 1 and c2.counts["events"].deletes == 3
    assert f"includes the uncommitted writes of failed cell(s) [{failed}]" in capsys.readouterr().out

    # A write that puts back what was there: the file changed, the data did not.
    nb.cell("con.execute(\"UPDATE orders SET customer = 'x' WHERE id = 1\"); "
            "con.execute(\"UPDATE orders SET customer = 'ann b' WHERE id = 1\")")
    assert repo.log(n=1)[0].id == c2.id

    # An explicit %dbcommit in a cell is not committed twice.
    nb.cell("con.execute('DELETE FROM orders WHERE id = 3')\n%dbcommit -m explicit")
    assert [x.message for x in repo.log(n=2)] == ["explicit", c2.message]

    nb.cell("%dbcommit --auto off")
    assert "auto-commit is off" in capsys.readouterr().out
    nb.cell("con.execute('DELETE FROM orders')")
    assert repo.log(n=1)[0].message == "explicit"
    assert not nb.shell.events.callbacks["post_run_cell"].count(getattr(nb.magics.auto, "post_run_cell", None))
    nb.cell("con.close()")


def test_auto_commit_reports_errors_without_breaking_the_cell(tracked: Path, nb: Nb,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    nb.cell("%dbcommit --auto")
    repo = dbvers.open(tracked)
    # Another writer holds the database: the commit waits, then gives up with the one-line message.
    nb.shell.run_cell("import os; os.environ['DBVERS_LOCK_TIMEOUT'] = '0.2'")
    holder = sqlite3.connect(tracked, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("DELETE FROM events")
    # Another process's write shows in the fingerprint once committed; touching the file
    # while the lock is held stands in for it.
    r = nb.shell.run_cell(f"os.utime({str(tracked)!r})", store_history=True)
    assert r.success
    assert "dbvers: auto-commit skipped:" in capsys.readouterr().err
    holder.execute("ROLLBACK")
    holder.close()
    os.environ["DBVERS_LOCK_TIMEOUT"] = "5"
    assert len(repo.log()) == 1
    nb.cell("%dbcommit --auto off")


def test_auto_follows_use(nb: Nb, db_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    dbvers.init(db_path)
    other_dir = tmp_path_factory.mktemp("other")
    other = other_dir / "b.db"
    execute(other, "CREATE TABLE t(x)")
    dbvers.init(other)
    nb.cell(f"%dbvers use {db_path}")
    nb.cell("%dbcommit --auto")
    nb.cell(f"%dbvers use {other}")
    assert nb.magics.auto is not None and nb.magics.auto.path == other
    nb.cell(f"import sqlite3\nc = sqlite3.connect({str(other)!r}); c.execute('INSERT INTO t VALUES (1)'); c.commit(); c.close()")
    assert dbvers.open(other).log(n=1)[0].meta.get("auto") is True
    nb.cell("%dbcommit --auto off")


# -- %dbdiff -----------------------------------------------------------------------------


@pytest.fixture
def changed(tracked: Path) -> Path:
    execute(tracked, """
        UPDATE orders SET price = 10.0 WHERE id = 1;
        DELETE FROM orders WHERE id = 2;
        INSERT INTO orders VALUES (4, 'dan', 1, 4.0, NULL), (5, 'eve', 2, 5.0, NULL), (6, 'fay', 3, 6.0, NULL);
        INSERT INTO events VALUES ('close', 3);
    """)
    return tracked


def test_dbdiff_text_without_a_kernel(changed: Path, nb: Nb, capsys: pytest.CaptureFixture[str]) -> None:
    nb.cell("%dbdiff")
    out = capsys.readouterr().out
    assert "diff HEAD..working" in out and "price: 9.5 → 10.0" in out
    assert "2 table(s) changed, 4 row(s) added, 1 modified, 1 removed" in out
    nb.cell("%dbdiff --page-size 1 -t orders")
    assert "… and 4 more changed row(s)" in capsys.readouterr().out
    nb.cell('%dbdiff --text --skinny --where "diff_type = \'modified\'"')
    out = capsys.readouterr().out
    assert "price: 9.5 → 10.0" in out and "dan" not in out
    assert nb.displayed == []


def test_dbdiff_widget(changed: Path, nb: Nb) -> None:
    nb.magics.use_widgets = True
    assert nb.cell("%dbdiff") is None
    view = nb.view
    assert isinstance(view, DiffView)
    assert view.tabs.titles == ("events (+1 ~0 −0)", "orders (+3 ~1 −1)")
    assert "2 table(s) changed, 4 row(s) added, 1 modified, 1 removed" in view.header.value
    orders = view.pane("orders")
    assert orders.rendered and orders.shown == 5
    html = orders.rows.value
    assert html.count("dbvers-added") == 3 and html.count("dbvers-removed") == 1
    assert "9.5</span> → <span" in html and "dbvers-modified" in html
    # The display bundle carries the static HTML for frontends without widget JS.
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "dbvers-modified" in bundle["text/html"] and "orders (+3 ~1 −1)" in bundle["text/html"]


def test_dbdiff_widget_options(changed: Path, nb: Nb) -> None:
    nb.magics.use_widgets = True
    nb.cell("%dbdiff HEAD -t orders --page-size 2")
    view = nb.view
    assert view.tabs.titles == ("orders (+3 ~1 −1)",)
    pane = view.pane("orders")
    assert pane.shown == 2 and "rows 1–2 of 5" in pane.position.value
    nb.cell("%dbdiff -t orders --skinny --where \"diff_type = 'modified'\"")
    rows = nb.view.pane("orders").rows.value
    assert ">price<" in rows and ">customer<" not in rows  # skinny: key and changed columns
    nb.cell('%dbdiff --where "to_qty > 1"')
    view = nb.view
    assert view.tabs.titles == ("orders (+2 ~1 −0)",)  # events has no qty column; counts filtered
    pane = view.pane("orders")
    assert pane.total == 3 and "(filtered)" in pane.position.value
    pane.filter.value = ""
    assert pane.total == 5 and "rows 1–5 of 5" in pane.position.value
    repo = dbvers.open(changed)
    repo.commit("changes")
    nb.cell("%dbdiff HEAD~1 HEAD")
    assert nb.view.tabs.titles == ("events (+1 ~0 −0)", "orders (+3 ~1 −1)")
    nb.cell("%dbdiff")
    assert "no differences" in nb.view.header.value and nb.view.panes == []


def test_dbdiff_errors(changed: Path, nb: Nb) -> None:
    nb.magics.use_widgets = True
    assert nb.fails("%dbdiff a b c") == cli_message("diff", "a", "b", "c")
    assert nb.fails("%dbdiff nosuch") == cli_message("diff", "nosuch")
    assert nb.fails("%dbdiff -t nosuch") == cli_message("diff", "-t", "nosuch")
    msg = nb.fails('%dbdiff --where "no_such_column = 1"')
    assert msg.startswith("bad --where expression") and msg == cli_message("diff", "--where", "no_such_column = 1")
    assert nb.fails("%dbdiff --page-size 0") == "--page-size takes a number >= 1"
    assert "unrecognized arguments" in nb.fails("%dbdiff --bogus")
    nb.magics.use_widgets = False
    assert nb.fails("%dbdiff nosuch") == cli_message("diff", "nosuch")
    assert nb.displayed == []


def test_diff_view_paging_filter_skinny_export(changed: Path, nb: Nb) -> None:
    repo = dbvers.open(changed)
    d = repo.diff()
    ns: dict[str, Any] = {}
    view = d.widget(page_size=2, namespace=ns)
    p = view.pane("orders")
    first = p.rows.value
    assert p.prev.disabled and not p.next.disabled and "rows 1–2 of 5" in p.position.value
    p.next.click()
    assert "rows 3–4 of 5" in p.position.value and p.rows.value != first
    p.next.click()
    assert "rows 5–5 of 5" in p.position.value and p.next.disabled
    p.prev.click()
    assert "rows 3–4 of 5" in p.position.value
    # The filter box: an SQL condition; a bad one shows its message and keeps the page.
    p.filter.value = "diff_type = 'added'"
    assert p.total == 3 and "rows 1–2 of 3 (filtered)" in p.position.value
    assert "dbvers-removed" not in p.rows.value
    p.filter.value = "nonsense ((("
    assert "bad --where expression" in text(p.message.value) and p.total == 3
    p.filter.value = ""
    assert p.total == 5 and p.message.value == ""
    # Skinny: key and changed columns only (the removed row's note differs from NULL).
    p.skinny.value = True
    assert ">customer<" in p.rows.value and ">note<" in p.rows.value
    p.filter.value = "diff_type <> 'removed'"
    assert ">customer<" in p.rows.value and ">note<" not in p.rows.value
    # Export: the shown table (filter and skinny applied), all its rows, into a variable.
    p.export.click()
    df = ns["orders_diff"]
    assert len(df) == 4 and set(df.diff_type) == {"added", "modified"}
    assert "from_note" not in df.columns and "to_price" in df.columns
    assert view.exported["orders_diff"] is df
    assert "4 row(s) of orders exported to the variable orders_diff" in text(p.message.value)
    p.export_name.value = "not a name"
    p.export.click()
    assert "not a valid Python variable name" in text(p.message.value)
    view.close()
    d.close()


def test_diff_view_default_namespace_is_the_users(changed: Path, nb: Nb) -> None:
    with dbvers.open(changed).diff() as d:
        view = d.widget()
        view.pane("events").export.click()
        assert len(nb.shell.user_ns["events_diff"]) == 1
        view.close()


def test_diff_view_tabs_render_lazily_past_eager_limit(changed: Path, nb: Nb,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from dbvers.render import widgets

    monkeypatch.setattr(widgets, "EAGER_TABS", 1)
    with dbvers.open(changed).diff() as d:
        view = d.widget()
        events, orders = view.panes
        assert events.rendered and not orders.rendered
        assert "open this tab in a live notebook" in view.static_html()
        view.tabs.selected_index = 1
        assert orders.rendered and "dbvers-modified" in orders.rows.value
        view.close()


def test_diff_view_background_counting(changed: Path, nb: Nb) -> None:
    """Big diffs: the first page first, counts from a second connection in a thread."""
    with dbvers.open(changed).diff() as d:
        view = DiffView(d, background=True, page_size=2, namespace={})
        first = view.panes[0]
        assert first.table == "events" and first.rendered
        assert view.wait(30)
        assert view.tabs.titles == ("events (+1 ~0 −0)", "orders (+3 ~1 −1)")
        assert view.pending == [] and view.error is None
        assert "2 table(s) changed, 4 row(s) added" in view.header.value
        orders = view.pane("orders")
        assert orders.rendered and orders.total == 5 and "rows 1–2 of 5" in orders.position.value
        view.close()
    with dbvers.open(changed).diff() as d:
        view = DiffView(d, background=True, where="diff_type = 'added'", namespace={})
        assert view.wait(30)
        assert [p.total for p in view.panes] == [1, 3]
        view.close()


# -- %dblog ------------------------------------------------------------------------------


@pytest.fixture
def history(tracked: Path) -> Path:
    repo = dbvers.open(tracked)
    execute(tracked, "UPDATE orders SET qty = 3 WHERE id = 1")
    repo.commit("qty of ann")
    repo.tag("v1")
    repo.branch("side")
    execute(tracked, "DELETE FROM events WHERE kind = 'close'")
    repo.commit("drop closes")
    return tracked


def test_dblog_text(history: Path, nb: Nb, capsys: pytest.CaptureFixture[str]) -> None:
    nb.cell("%dblog")
    out = capsys.readouterr().out
    assert "(HEAD -> main)" in out and "tag: v1" in out and "drop closes" in out
    nb.cell("%dblog v1 -n 1 --text")
    out = capsys.readouterr().out
    assert "qty of ann" in out and "drop closes" not in out


def test_dblog_widget(history: Path, nb: Nb) -> None:
    nb.magics.use_widgets = True
    nb.cell("%dblog")
    view = nb.view
    assert isinstance(view, LogView)
    labels = [label for label, _ in view.select.options]
    assert len(labels) == 3
    assert "(HEAD -> main)" in labels[0] and "drop closes" in labels[0] and "events +0 ~0 −1" in labels[0]
    assert "(side, tag: v1)" in labels[1] and "qty of ann" in labels[1]
    assert "Initial commit" in labels[2]
    # The newest commit is selected, its details and diff shown.
    assert "drop closes" in view.details.value and "HEAD -&gt; main" in view.details.value
    assert view.diff_view is not None and view.diff_view.tabs.titles == ("events (+0 ~0 −1)",)
    assert view.checkout.description == "check out main"
    # Selecting another commit shows its diff (the commit's own counts label the tabs).
    view.select.value = view.commits[1].id
    assert view.diff_view.tabs.titles == ("orders (+0 ~1 −0)",)
    assert "dbvers-modified" in view.diff_view.panes[0].rows.value
    assert "2</span> → <span" in view.diff_view.panes[0].rows.value
    assert view.checkout.description == "check out side"
    # The root commit: everything it holds, as added rows.
    view.select.value = view.commits[2].id
    assert view.diff_view.tabs.titles == ('events (+3 ~0 −0)', 'odd name (+2 ~0 −0)', 'orders (+3 ~0 −0)')
    assert view.checkout.description == f"check out {view.commits[2].short_id}"
    assert "added" in view.static_html()
    nb.cell("%dblog side -n 1")
    assert len(nb.view.commits) == 1


def test_log_widget_checkout_respects_dirty_guard(history: Path, nb: Nb) -> None:
    nb.magics.use_widgets = True
    nb.cell("%dblog")
    view = nb.view
    repo = dbvers.open(history)
    view.select.value = view.commits[1].id  # side's tip
    execute(history, "INSERT INTO events VALUES ('dirty', 0)")
    before = dump_state(history)
    view.checkout.click()
    assert "uncommitted changes in events would be lost by checkout" in text(view.message.value)
    assert repo.head.branch == "main" and dump_state(history) == before
    repo.restore(force=True)
    view.checkout.click()
    assert "Switched to branch 'side'" in text(view.message.value)
    assert repo.head.branch == "side"
    labels = [label for label, _ in view.select.options]
    assert "(HEAD -> side, main)" not in labels[0] and "(HEAD -> side, tag: v1)" in labels[1]
    # A commit that no branch points at: a detached HEAD, like git.
    view.select.value = view.commits[2].id
    view.checkout.click()
    assert "detached HEAD" in text(view.message.value) and repo.head.branch is None


def test_dblog_errors(history: Path, nb: Nb) -> None:
    nb.magics.use_widgets = True
    assert nb.fails("%dblog nosuch") == cli_message("log", "nosuch")
    assert nb.fails("%dblog -n -1") == cli_message("log", "-n", "-1")
    assert "unrecognized arguments" in nb.fails("%dblog a b")


# -- %dbcheckout -----------------------------------------------------------------------------


def test_dbcheckout(history: Path, nb: Nb, capsys: pytest.CaptureFixture[str]) -> None:
    repo = dbvers.open(history)
    nb.cell("%dbcheckout side")
    assert "Switched to branch 'side'" in capsys.readouterr().out
    assert repo.head.branch == "side"
    nb.cell("%dbcheckout v1")
    assert "detached" in capsys.readouterr().out and repo.head.branch is None
    nb.cell("%dbcheckout -b experiment main")
    assert "Switched to a new branch 'experiment'" in capsys.readouterr().out
    assert repo.head.branch == "experiment"
    execute(history, "DELETE FROM orders")
    msg = nb.fails("%dbcheckout side")
    assert msg == cli_message("checkout", "side")
    assert "uncommitted changes in orders" in msg and repo.head.branch == "experiment"
    nb.cell("%dbcheckout side -f")
    assert repo.head.branch == "side" and len(dbvers.open(history).read_table("orders")) == 3
    assert nb.fails("%dbcheckout") == cli_message("checkout")
    assert nb.fails("%dbcheckout nosuch") == cli_message("checkout", "nosuch")
    assert "unrecognized arguments" in nb.fails("%dbcheckout a b")


# -- static HTML and terminal text -----------------------------------------------------------


def test_reprs(history: Path, nb: Nb) -> None:
    repo = dbvers.open(history)
    fmt = nb.shell.display_formatter
    c = repo.log(n=1)[0]
    data, _ = fmt.format(c)
    assert c.id in data["text/html"] and "drop closes" in data["text/html"]
    assert data["text/plain"].startswith(f"commit {c.id}")
    log = repo.log()
    assert isinstance(log, list) and log == list(log)
    data, _ = fmt.format(log)
    assert "HEAD -&gt; main" in data["text/html"] and "tag: v1" in data["text/html"]
    assert data["text/html"].count("dbvers-commit-row") == 3
    assert "(HEAD -> main)" in data["text/plain"]
    execute(history, "UPDATE orders SET price = 1.0 WHERE id = 3")
    with repo.diff() as d:
        data, _ = fmt.format(d)
        assert "dbvers-modified" in data["text/html"] and "1.25</span> → <span" in data["text/html"]
        assert "price: 1.25 → 1.0" in data["text/plain"]


def test_static_html_shows_first_page_only(tracked: Path, nb: Nb) -> None:
    rows = ", ".join(f"({i}, 'c{i}', {i}, 1.0, NULL)" for i in range(10, 60))
    execute(tracked, f"INSERT INTO orders VALUES {rows}")
    with dbvers.open(tracked).diff() as d:
        html = d._repr_html_()
    assert html.count("dbvers-added") == 20
    assert "… and 30 more changed row(s)" in html
