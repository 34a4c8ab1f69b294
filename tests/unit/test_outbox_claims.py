"""Two relays (hosts) claiming outbox rows on one PostgreSQL database: no row
goes to both, and no scope is published out of order (nfp.outbox.claim)."""
from __future__ import annotations

from nfp import outbox
from nfp.db import migrate
from nfp.db.engine import make_engine, make_sessionmaker


def test_claims_skip_rows_held_elsewhere_and_keep_each_scope_in_order(pg_url):
    migrate.upgrade(pg_url)
    engine = make_engine(pg_url, pool_size=2)
    sessionmaker = make_sessionmaker(engine)
    with sessionmaker.begin() as session:
        outbox.add(session, "X", [("x.1", {}), ("x.2", {})])
        outbox.add(session, "Y", [("y.1", {})])
        outbox.add(session, "X", [("x.3", {})])
    host_a, host_b = sessionmaker(), sessionmaker()
    try:
        a = outbox.claim(host_a, 2)
        assert [r.event_type for r in a] == ["x.1", "x.2"]
        # b skips a's locked rows, and x.3 too: an earlier row of X is a's
        b = outbox.claim(host_b, 10)
        assert [r.event_type for r in b] == ["y.1"]
        outbox.remove(host_a, [r.id for r in a])
        host_a.commit()
        outbox.remove(host_b, [r.id for r in b])
        host_b.commit()
        assert [r.event_type for r in outbox.claim(host_b, 10)] == ["x.3"]
        host_b.rollback()
    finally:
        host_a.close()
        host_b.close()
    with sessionmaker() as session:
        assert outbox.count(session) == 1
    engine.dispose()

