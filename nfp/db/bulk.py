"""Many rows in one INSERT, with the per-row work done by PostgreSQL.

Group commit inserts hundreds of rows per statement (network functions, their
first steps, request ids, audit rows). SQLAlchemy's ``insertmanyvalues`` renders
every row's parameters in Python; profiled at intake (``bench/bench_rpc.py``),
that was the largest single cost of accepting a create after the database wait.
On PostgreSQL the rows travel instead as one JSON array, which
``json_populate_recordset`` turns into rows of the table's own type in C: the
Python side is one JSON encoding, by orjson (:mod:`nfp.jsonfast`). Other
databases (SQLite) take SQLAlchemy's ordinary executemany, so both paths store
the same values.

Column defaults declared in Python (``default=...``) are not server defaults, so
they are filled in here for columns a row leaves out, as SQLAlchemy would.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Optional, Sequence

from sqlalchemy import Table, insert, text
from sqlalchemy.sql.schema import Column

from nfp import jsonfast


def insert_rows(conn, table: Table, rows: list[dict[str, Any]],
                returning: Sequence[Column] = ()) -> Optional[list]:
    """Insert ``rows`` (dicts keyed by column name) into ``table`` with one
    statement on ``conn`` (a Connection or Session). With ``returning``, the
    returned rows, in the order of ``rows``."""
    if not rows:
        return [] if returning else None
    dialect = conn.dialect if hasattr(conn, "dialect") else conn.get_bind().dialect
    if dialect.name != "postgresql":
        return _executemany(conn, table, rows, returning)
    names = _columns(table, rows)
    filled = [_with_defaults(table, names, row) for row in rows]
    data = jsonfast.dumps(filled, _json_value)
    if "\\u0000" in data:
        # a NUL byte: the driver's own refusal names it (nfp.faults.data_field finds
        # the field), where the server's JSON error would not
        return _executemany(conn, table, rows, returning)
    result = conn.execute(_statement(dialect, table, tuple(names), tuple(returning)), {"rows": data})
    return list(result) if returning else None


#: the INSERT per (table, columns, returning), built once: a step inserts its
#: follow-ups with one, and parsing a new ``text()`` each time was a tenth of a
#: worker's CPU under load (``py-spy``, ``bench/bench_rpc.py`` (d))
_STATEMENTS: dict[tuple, Any] = {}


def _statement(dialect, table: Table, names: tuple, returning: tuple):
    key = (table.name, names, returning)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        quote = dialect.identifier_preparer.quote
        cols = ", ".join(quote(name) for name in names)
        sql = (f"INSERT INTO {quote(table.name)} ({cols}) SELECT {cols} FROM "
               f"json_populate_recordset(NULL::{quote(table.name)}, CAST(:rows AS json))")
        if returning:
            # rows come back in insertion order, which is the array's order
            sql += " RETURNING " + ", ".join(quote(c.name) for c in returning)
        stmt = _STATEMENTS[key] = text(sql).columns(*returning) if returning else text(sql)
    return stmt


def _executemany(conn, table: Table, rows: list[dict], returning: Sequence[Column]) -> Optional[list]:
    stmt = insert(table)
    if returning:
        return list(conn.execute(stmt.returning(*returning, sort_by_parameter_order=True), rows))
    conn.execute(stmt, rows)
    return None


def _columns(table: Table, rows: Iterable[dict]) -> list[str]:
    """The columns to write: those any row names, and those with a Python default."""
    named = set().union(*(row.keys() for row in rows))
    unknown = named - set(table.c.keys())
    if unknown:
        raise KeyError(f"{table.name} has no column(s) {sorted(unknown)}")
    return [c.name for c in table.columns
            if c.name in named or (c.default is not None and not c.primary_key)]


def _with_defaults(table: Table, names: list[str], row: dict) -> dict:
    if len(row) == len(names):
        return row
    out = dict(row)
    for name in names:
        if name not in out:
            default = table.c[name].default
            if default is None:
                out[name] = None
            elif default.is_scalar:
                out[name] = default.arg
            else:  # a callable: SQLAlchemy wraps it to take an execution context
                out[name] = default.arg(None)
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a bulk insert")
