"""Engine and session factory: PostgreSQL (psycopg2) in production, SQLite embedded."""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker


def normalise_url(url: str) -> str:
    """A bare ``postgresql://`` means psycopg2 (the driver nfp installs); SQLAlchemy
    2.1 would otherwise pick psycopg 3."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


#: PostgreSQL ends a session idle inside a transaction this long (ms)
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000


def make_engine(url: str, pool_size: int = 10, echo: bool = False, autocommit: bool = False) -> Engine:
    """Create an engine. SQLite gets WAL and a busy timeout so listener and
    workers (separate processes) can write to one file. ``autocommit`` (PostgreSQL;
    ignored on SQLite) makes every statement its own transaction, for reads of one
    statement: set on the engine, it costs nothing per checkout."""
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

        return engine
    # bounded: no overflow, so a host's connections are what nfp.db.budget says;
    # a thread finding the pool empty waits for a connection (a timeout is transient)
    isolation = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return create_engine(url, echo=echo, pool_size=pool_size, max_overflow=0, pool_timeout=60,
                         pool_pre_ping=False, pool_recycle=1800, **isolation,
                         connect_args={"application_name": f"nfp-{os.getpid()}",
                                       # A session whose client vanished mid-transaction (a
                                       # partition, a half-open connection) would hold its row
                                       # locks until TCP keepalive noticed, hours later, and
                                       # every step needing those rows would wait behind it.
                                       # nfp never idles inside a transaction (steps commit
                                       # before device I/O), so the server may end such a
                                       # session after a minute.
                                       "options": _pg_options(url)}
                         if url.startswith("postgresql") else {})


def _pg_options(url: str) -> str:
    """The URL's own ``options`` (a search_path, say) plus nfp's session settings:
    connect_args would otherwise replace the URL's value."""
    given = make_url(url).query.get("options") or ""
    if isinstance(given, tuple):
        given = " ".join(given)
    return f"{given} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}".strip()


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
