"""Engine and session factory: PostgreSQL (psycopg2) in production, SQLite embedded."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker


def normalise_url(url: str) -> str:
    """A bare ``postgresql://`` means psycopg2 (the driver nfp installs); SQLAlchemy
    2.1 would otherwise pick psycopg 3."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


#: ``Connection.info`` key set once the current transaction has written (see :func:`wrote`)
_WROTE = "nfp_wrote"
_WRITES = ("INSERT", "UPDATE", "DELETE", "WITH", "MERGE")


def _track_writes(engine: Engine) -> None:
    """Note on the connection when its transaction runs a writing statement, so a
    mid-step commit (:meth:`nfp.engine.step.Step.checkpoint`) can be fenced only
    when it would change something."""
    @event.listens_for(engine, "before_cursor_execute")
    def _note(conn, _cursor, statement, _params, _context, _many):
        if statement.lstrip()[:6].upper().startswith(_WRITES):
            conn.info[_WROTE] = True

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _reset(conn):
        # A lost connection's rollback runs this too: reading its info would try
        # to reconnect inside the dead transaction and raise PendingRollbackError
        # in place of the real (transient) error. Its info goes with it anyway.
        if not conn.invalidated:
            conn.info.pop(_WROTE, None)


def wrote(session) -> bool:
    """Has ``session``'s open transaction written anything (pending ORM changes
    included)? False outside a transaction."""
    if not session.in_transaction():
        return False
    if session.new or session.dirty or session.deleted:
        return True
    return bool(session.connection().info.get(_WROTE))


#: PostgreSQL ends a session idle inside a transaction this long (ms)
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
#: bounds of an autocommit (read) engine's connects (s) and statements (ms): the
#: listener's consumer thread answers ``get_network_function`` on one
READ_CONNECT_TIMEOUT = 5
READ_STATEMENT_TIMEOUT_MS = 5_000


def make_engine(url: str, pool_size: int = 10, echo: bool = False, autocommit: bool = False) -> Engine:
    """Create an engine. SQLite gets WAL and a busy timeout so listener and
    workers (separate processes) can write to one file. ``autocommit`` (PostgreSQL;
    ignored on SQLite) makes every statement its own transaction, for reads of one
    statement: set on the engine, it costs nothing per checkout. Such an engine's
    connects and statements are bounded (``READ_CONNECT_TIMEOUT``,
    ``READ_STATEMENT_TIMEOUT_MS``): a read waits seconds, not minutes, on a
    database that stopped answering."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database or ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        pooling = {} if path in ("", ":memory:") else {"pool_size": pool_size,
                                                        "max_overflow": pool_size}
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False},
                               **pooling)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # IMMEDIATE takes the write lock up front: no deadlock upgrading a read lock
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        _track_writes(engine)
        return engine
    # bounded: no overflow, so a host's connections are what nfp.db.budget says;
    # a thread finding the pool empty waits for a connection (a timeout is transient)
    isolation = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    bounds = {"connect_timeout": READ_CONNECT_TIMEOUT} if autocommit else {}
    settings = {"statement_timeout": READ_STATEMENT_TIMEOUT_MS} if autocommit else {}
    engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=0, pool_timeout=60,
                         pool_pre_ping=False, pool_recycle=1800, **isolation,
                         connect_args={"application_name": f"nfp-{os.getpid()}",
                                       # A session whose client vanished mid-transaction (a
                                       # partition, a half-open connection) would hold its row
                                       # locks until TCP keepalive noticed, hours later, and
                                       # every step needing those rows would wait behind it.
                                       # nfp never idles inside a transaction (steps commit
                                       # before device I/O), so the server may end such a
                                       # session after a minute.
                                       "options": _pg_options(url, settings), **bounds}
                         if url.startswith("postgresql") else {})
    if not autocommit:
        _track_writes(engine)
    return engine


def _pg_options(url: str, extra: Optional[dict] = None) -> str:
    """The URL's own ``options`` (a search_path, say) plus nfp's session settings:
    connect_args would otherwise replace the URL's value."""
    given = make_url(url).query.get("options") or ""
    if isinstance(given, tuple):
        given = " ".join(given)
    settings = {"idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_TIMEOUT_MS, **(extra or {})}
    return " ".join([given, *(f"-c {name}={value}" for name, value in settings.items())]).strip()


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
