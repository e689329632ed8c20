"""Shared fixtures: fresh databases, repositories, the CLI through its entry point (in this
process, or as a real process), and an exact dump of a database's state for comparisons."""

from __future__ import annotations

import contextlib
import io
import math
import os
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import dbvers

collect_ignore = ["benchmarks"]

# Bytecode caches on, even where the environment turns them off (PYTHONDONTWRITEBYTECODE=1):
# without them each of the suite's Python processes compiles dbvers from source (0.3 s of
# CPU at every start) and each worker recompiles the test modules. __pycache__ is git-ignored;
# a test that must not write them says so for its own process (test_backup_safety's strace).
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    sys.dont_write_bytecode = False


def _fsync_checked(fd: int) -> None:
    """os.fsync without the wait for the disk: the descriptor is still checked (a bad one
    raises OSError as fsync would), but nothing is flushed."""
    os.fstat(fd)


# No test can see whether data reached the disk (a SIGKILLed process's writes are in the
# page cache either way; power loss is not simulated), and the syncs are slow on a busy
# disk: test_cli and test_errors alone make 4,280 of them, 20 of their 71 s (measured on a
# shared machine). This process only: the children tests start, and SQLite's own syncs,
# still sync. DBVERS_TEST_FSYNC=1 keeps the real fsync.
if os.environ.get("DBVERS_TEST_FSYNC") != "1":
    os.fsync = _fsync_checked

# Tests never wait 10 s for a lock held by a crashed helper.
os.environ.setdefault("DBVERS_LOCK_TIMEOUT", "5")


# -- the order tests run in, and how two workers share them --------------------------------

# Modules whose tests take tens of seconds each (measured; slow-marked tests count too):
# they start first, so that under ``-n 2`` no worker is left with one of them at the end
# while the other is idle. Longest first.
LONG_MODULES = ("test_crash.py", "test_stateful.py", "test_diff_oracle.py", "test_browser.py",
                "test_backup.py", "test_merge_crash.py", "test_backup_safety.py",
                "test_backup_interop.py", "test_roundtrip_property.py", "test_notebooks.py",
                "test_merge_property.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long modules first (each module's tests stay together and in order), then the
    rest as collected. The same order in every xdist worker, as xdist requires."""
    rank = {name: i for i, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N`` without ``--dist``: work stealing instead of xdist's ``load``. ``load`` hands
    each worker a fixed first chunk (an eighth of the suite), so the worker that got the
    long modules above kept them all; a worker that runs dry steals half of another's queue."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import WorkStealingScheduling

    return WorkStealingScheduling(config, log)


def _exact(v: Any) -> Any:
    """A value with its SQLite type made explicit (1, 1.0 and '1' stay different; NaN can't occur)."""
    if isinstance(v, float):
        return ("real", v.hex() if math.isfinite(v) else repr(v))
    if isinstance(v, int):
        return ("integer", v)
    if isinstance(v, bytes):
        return ("blob", v)
    if v is None:
        return ("null", None)
    return ("text", v)


def dump_state(path: Path | str) -> dict[str, Any]:
    """Everything dbvers promises to version, read with the stdlib sqlite3 module.

    Rowid tables are dumped with their rowid (checkout must reproduce it), all
    rows sorted, every value tagged with its type.
    """
    conn = sqlite3.connect(str(path))
    # Text that isn't valid UTF-8 is legal in SQLite: read it losslessly (bytes <-> str both ways).
    conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    try:
        schema = sorted(
            conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema").fetchall(),
            key=lambda r: (r[0], r[1]),
        )
        tables: dict[str, list[tuple[Any, ...]]] = {}
        for name, kind, wr in conn.execute(
            "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'"
        ).fetchall():
            if kind not in ("table", "shadow") or name in ("sqlite_schema", "sqlite_temp_schema"):
                continue
            q = '"' + name.replace('"', '""') + '"'
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({q})")]
            rowid = None if wr else next(
                (n for n in ("rowid", "_rowid_", "oid") if n not in cols), None
            )
            sel = f"SELECT {rowid + ', ' if rowid else ''}* FROM {q}"
            rows = [tuple(_exact(v) for v in r) for r in conn.execute(sel)]
            tables[name] = sorted(rows, key=repr)
        pragmas = {
            p: conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("user_version", "application_id")
        }
        return {"schema": schema, "tables": tables, "pragmas": pragmas}
    finally:
        conn.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A small database with a PK table, a rowid table without PK and a WITHOUT ROWID table."""
    p = tmp_path / "data.db"
    conn = sqlite3.connect(p)
    conn.executescript(
        """
        CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, qty INTEGER, price REAL, note);
        INSERT INTO orders VALUES (1, 'ann', 2, 9.5, NULL), (2, 'bob', 1, 20.0, x'00ff'),
                                  (3, 'zoë', 5, 1.25, 'first');
        CREATE TABLE events(kind, payload);
        INSERT INTO events VALUES ('open', 1), ('close', 2.5), ('open', NULL);
        CREATE TABLE "odd name"("key part" TEXT, k2 TEXT, v, PRIMARY KEY ("key part", k2)) WITHOUT ROWID;
        INSERT INTO "odd name" VALUES ('a', 'x', 1), ('b', 'y', 'two');
        """
    )
    conn.commit()
    conn.close()
    return p


@pytest.fixture
def repo(db_path: Path) -> dbvers.Repo:
    return dbvers.init(db_path)


@pytest.fixture(params=["in memory", "in a file"])
def state_rebuilds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test twice: states rebuilt in memory (a small state's path), then every one in a
    private file (a state larger than the memory limit: its own journal, page cache and save)."""
    if request.param == "in a file":
        from dbvers import states

        monkeypatch.setattr(states, "trusted_memory_limit", lambda: 0)
    return str(request.param)


def execute(path: Path | str, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run SQL against the working database the way a user's code would (stdlib sqlite3)."""
    conn = sqlite3.connect(str(path))
    try:
        if params:
            conn.execute(sql, params)
        else:
            conn.executescript(sql)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def sql() -> Callable[..., None]:
    return execute


def _one_parser() -> None:
    """Make the in-process runner build the command line's parser once, not once a call.

    A ``dbvers`` process builds its parser once (22 subcommands: 20-40 ms, most of it
    argparse asking gettext for every help string); the suite calls ``main`` in-process
    thousands of times, and rebuilding it was a fifth of the suite's time. Parsing never
    changes a parser, so one built parser serves every call (the first call still builds
    it with the real code; ``tests/test_cli_docs.py`` reads the same object).
    """
    import functools

    from dbvers import cli

    if not hasattr(cli.build_parser, "cache_info"):
        cli.build_parser = functools.cache(cli.build_parser)  # type: ignore[method-assign]


_one_parser()


def run_cli(*args: str, cwd: Path | str | None = None, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``dbvers ARGS`` in this process, through the console script's own entry point
    (:func:`dbvers.cli.main`), as a separate process would see it.

    stdout and stderr are fresh non-terminal streams (so rich writes plain text, as
    when piped), stdin holds *input*; *env* (plus ``COLUMNS=120``) and *cwd* apply to
    this call only and are put back afterwards. What a process would print for an
    exception that escapes ``main`` (``DBVERS_DEBUG=1``) is a traceback and exit 1.
    Tests that need a real process (kills, another process's locks, broken pipes,
    signals, the installed executable) use :func:`run_cli_subprocess`.
    """
    from dbvers.cli import main

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    out, err = _capture_stream("surrogateescape"), _capture_stream("backslashreplace")
    try:
        os.environ.update({**(env or {}), "COLUMNS": "120"})
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(input or ""), out, err
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # what the interpreter does with an exception main let through
            traceback.print_exc(file=err)
            code = 1
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["dbvers", *args], code, _captured(out), _captured(err))


def _capture_stream(errors: str) -> io.TextIOWrapper:
    """A text stream like a pipe's: UTF-8 with the error handler Python gives a process's
    stdout (surrogateescape here) or stderr (always backslashreplace); no terminal, no
    file descriptor."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, newline="\n",
                            write_through=True)


def _captured(stream: io.TextIOWrapper) -> str:
    """What ``subprocess.run(text=True)`` would have read: decoded, universal newlines."""
    stream.flush()
    data = stream.buffer.getvalue()  # type: ignore[attr-defined]
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def run_cli_subprocess(*args: str, cwd: Path | str | None = None, input: str | None = None,
                       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``dbvers ARGS`` as a real process (``python -m dbvers``): for the smoke tests of
    the entry point and for what needs a process of its own."""
    full_env = {**os.environ, **(env or {}), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "dbvers", *args],
        cwd=cwd, input=input, capture_output=True, text=True, env=full_env, timeout=300,
    )


def one_line_error(r: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The one ``dbvers: error:`` line a failed command printed (exit *code*, no traceback)."""
    assert r.returncode == code, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("dbvers: error: "), lines[0]
    return lines[0]


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


# -- S3 remotes: one moto server on 127.0.0.1 for the whole session ---------------------------

MOTO_BUCKET = "dbvers-tests"

# moto's server, with one change: requests are handled one at a time (connections are still
# accepted by many threads). moto checks If-Match / If-None-Match and then writes, without a
# lock, so two racing conditional PUTs could both win on its threaded server — which S3 itself
# never lets happen. Tests of compare-and-swap races need the real guarantee.
_SERIAL_MOTO = r"""
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

app = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()

def serial(environ, start_response):
    with one_at_a_time:
        return list(app(environ, start_response))

run_simple(sys.argv[1], int(sys.argv[2]), serial, threaded=True, request_handler=MotoRequestHandler)
"""
_moto: dict[str, Any] = {}


def moto_endpoint() -> str:
    """``http://127.0.0.1:<port>`` of this session's moto S3 server, started at first use.

    A real server on a free loopback port (never moto's in-process mock), dummy
    credentials and no instance metadata, so no test reaches any other address.
    Backend factories that only get a path (the storage contract suite) call this
    directly; tests take the ``s3_endpoint`` fixture.
    """
    if "url" not in _moto:
        os.environ.update({
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        })
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            os.environ.pop(name, None)
        # Its own process (``python -m moto.server``), not a thread of this one: the server
        # would otherwise share the GIL with the very clients whose races the tests run.
        import socket
        import time

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-c", _SERIAL_MOTO, "127.0.0.1", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import atexit

        atexit.register(_stop_moto, server)  # the contract suite's factories never tear down a fixture
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.05)
        import boto3

        boto3.client("s3", endpoint_url=url).create_bucket(Bucket=MOTO_BUCKET)
        _moto.update(server=server, url=url)
    return str(_moto["url"])


def _stop_moto(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        server.wait(10)


def moto_remote_url() -> str:
    """A fresh, empty ``s3://`` prefix in the session's bucket."""
    import secrets

    moto_endpoint()
    return f"s3://{MOTO_BUCKET}/t-{secrets.token_hex(6)}"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    yield moto_endpoint()
    server = _moto.pop("server", None)
    _moto.pop("url", None)
    if server is not None:
        _stop_moto(server)


# -- killable children without an interpreter start each -------------------------------------

_ZYGOTE = r"""
import json, os, runpy, signal, socket, sys, traceback

import dbvers  # noqa: F401 -- the slow imports (pyarrow; pandas, which merges and frames
import pandas  # noqa: F401    import on first use), done once for every child

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the waiters below reap themselves


def child(req, out, err):
    # A fresh process with the imports done: runs `python SCRIPT`, `-m MODULE` or `-c CODE`.
    code = 1
    try:
        os.dup2(out, 1)
        os.dup2(err, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        argv = req["argv"]
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path.insert(0, "")
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = argv
            sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))  # as `python SCRIPT` has it
            runpy.run_path(argv[0], run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)


sock = socket.socket(fileno=int(sys.argv[1]))
sock.sendall(b"ready")
while True:
    msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 3)
    if not msg:
        break  # the test process went away
    req = json.loads(msg)
    if os.fork() == 0:  # a waiter: forks the child, reports its pid and then its exit code
        sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        out, err, status = fds
        pid = os.fork()
        if pid == 0:
            os.close(status)
            child(req, out, err)
        os.close(out)
        os.close(err)
        os.write(status, f"{pid}\n".encode())
        _, st = os.waitpid(pid, 0)
        os.write(status, f"{os.waitstatus_to_exitcode(st)}\n".encode())
        os._exit(0)
    for fd in fds:
        os.close(fd)
"""


class ForkedChild:
    """A child process forked by the :class:`Zygote`, used like ``subprocess.Popen`` with
    ``stdout=PIPE, text=True``: ``pid``, ``stdout``, ``stderr``, ``kill``, ``send_signal``,
    ``poll``, ``wait``, ``communicate``, ``returncode``."""

    def __init__(self, status: int, stdout: io.TextIOWrapper, stderr: io.TextIOWrapper | None) -> None:
        self._status = status
        self.stdout, self.stderr = stdout, stderr
        self.pid = int(self._read_status(300))
        self.returncode: int | None = None

    def _read_status(self, timeout: float | None) -> str:
        import select

        line = b""
        while not line.endswith(b"\n"):
            if not select.select([self._status], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired("forked child", timeout or 0)
            chunk = os.read(self._status, 64)
            if not chunk:
                raise RuntimeError("the zygote's waiter died")
            line += chunk
        return line.decode().strip()

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.wait(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = int(self._read_status(timeout))
            os.close(self._status)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Everything the child writes, up to its end (stderr is read after stdout closes)."""
        out = self.stdout.read()
        err = self.stderr.read() if self.stderr is not None else ""
        self.wait(timeout)
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        return out, err


class Zygote:
    """One Python process that has imported dbvers and pandas and forks the children tests
    start, each one a process of its own (its own pid, locks, files and memory; killed for
    real) that only starts with those imports done.

    The crash loops start dozens of short-lived children only to SIGKILL them, and the
    concurrency tests start several "other processes" per test; each paying Python's start
    and the imports (about a second on a loaded machine) made those tests mostly
    interpreter starts. The zygote itself never opens a repository. The real executable's
    start is what ``run_cli_subprocess`` and the entry-point smoke tests are for.
    """

    def __init__(self) -> None:
        import socket

        # Packets keep each request whole, with its three file descriptors.
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE, str(theirs.fileno())],
                                      pass_fds=[theirs.fileno()])
        theirs.close()
        self._sock.settimeout(300)  # the imports, on a loaded machine
        if self._sock.recv(16) != b"ready":
            raise RuntimeError(f"the zygote did not start (exit {self._proc.wait(30)})")
        self._sock.settimeout(None)

    def popen(self, argv: list[str], stderr: Any = subprocess.PIPE, cwd: Path | str | None = None,
              env: dict[str, str] | None = None) -> ForkedChild:
        """Start ``python SCRIPT ARGS``, ``python -m MODULE ARGS`` or ``python -c CODE ARGS``
        (*argv* as for Popen, from ``sys.executable``) in *cwd* with *env* (default: this
        process's); *stderr* is ``subprocess.PIPE`` or an open file."""
        import json
        import socket

        assert argv[0] == sys.executable, "the zygote runs Python only"
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe() if stderr is subprocess.PIPE else (None, os.dup(stderr.fileno()))
        status_r, status_w = os.pipe()
        req = {"argv": argv[1:], "cwd": str(cwd or os.getcwd()), "env": dict(os.environ if env is None else env)}
        try:
            socket.send_fds(self._sock, [json.dumps(req).encode()], [out_w, err_w, status_w])
        finally:
            for fd in (out_w, err_w, status_w):
                os.close(fd)
        # The child's streams live as long as the child: ForkedChild.communicate closes them.
        err = None if err_r is None else open(err_r, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        return ForkedChild(status_r, open(out_r, encoding="utf-8"), err)

    def run(self, argv: list[str], cwd: Path | str | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Like ``subprocess.run(argv, capture_output=True, text=True)``."""
        child = self.popen(argv, cwd=cwd, env=env)
        out, err = child.communicate(timeout)
        return subprocess.CompletedProcess(argv, child.returncode or 0, out, err)

    def cli(self, *args: str, cwd: Path | str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``dbvers ARGS`` in another process, as :func:`run_cli_subprocess` runs it, forked."""
        return self.run([sys.executable, "-m", "dbvers", *args], cwd=cwd,
                        env={**os.environ, **(env or {}), "COLUMNS": "120"})

    def close(self) -> None:
        self._sock.close()
        self._proc.wait(30)


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    yield z
    z.close()
