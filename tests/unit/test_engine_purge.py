"""Purging finished steps: old closed rows go; open ones, and rows tied to open
ones through a fan-in, stay however old they are."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select

from nfp import config as nfp_config
from nfp.db import migrate
from nfp.db.base import utcnow
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.models import Event
from nfp.engine.housekeeping import Housekeeping

T = Event.__table__


def _row(name, status, age_days=None, parent_id=None):
    finished = utcnow() - dt.timedelta(days=age_days) if age_days is not None else None
    return {"key": name, "scope": name, "key_hash": 0, "type": "engine.noop", "payload": {},
            "status": status, "attempts": 1, "polls": 0, "due_at": utcnow(),
            "parent_id": parent_id, "pending_children": 0, "generation": 0,
            "created_at": utcnow() - dt.timedelta(days=3), "finished_at": finished}


def test_purge_deletes_old_finished_steps_and_keeps_open_ones(tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path),
                                  "orchestrator": {"event_retention": 86400}}, environ={})
    migrate.upgrade(conf.database_url)
    engine = make_engine(conf.database_url)
    sm = make_sessionmaker(engine)
    try:
        with sm.begin() as s:
            def add(*args, **kw):
                return s.execute(insert(T).values(_row(*args, **kw)).returning(T.c.id)).scalar()
            add("old-done", "done", 2)
            add("old-failed", "failed", 2)
            add("old-cancelled", "cancelled", 2)
            add("recent-done", "done", 0)
            add("pending", "pending")
            add("waiting", "waiting")
            open_parent = add("open-parent", "waiting")
            add("old-child-of-open-parent", "done", 2, parent_id=open_parent)
            closed_parent = add("closed-parent-with-open-child", "failed", 2)
            add("open-child", "pending", parent_id=closed_parent)
            done_parent = add("closed-parent", "done", 2)
            add("old-child-of-closed-parent", "done", 2, parent_id=done_parent)

        purged = Housekeeping(conf, sm).purge()

        with sm() as s:
            left = set(s.scalars(select(T.c.key)))
        assert purged == 5
        assert left == {"recent-done", "pending", "waiting", "open-parent",
                        "old-child-of-open-parent", "closed-parent-with-open-child", "open-child"}
    finally:
        engine.dispose()


def test_purge_works_in_bounded_batches(tmp_path, monkeypatch):
    from nfp.engine import housekeeping
    monkeypatch.setattr(housekeeping, "PURGE_BATCH", 3)
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    migrate.upgrade(conf.database_url)
    engine = make_engine(conf.database_url)
    sm = make_sessionmaker(engine)
    try:
        with sm.begin() as s:
            s.execute(insert(T), [_row(f"done-{i}", "done", 2) for i in range(10)])
        assert Housekeeping(conf, sm).purge() == 10
        with sm() as s:
            assert s.scalars(select(T.c.id)).all() == []
    finally:
        engine.dispose()
