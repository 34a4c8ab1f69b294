"""A database session lost mid-transaction surfaces as the error that says so
(a transient ``OperationalError``, retried by the executor), not as the
``PendingRollbackError`` of an event hook that touched the dead connection
while SQLAlchemy rolled it back."""
from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc, text

from nfp import faults
from nfp.db.models import NetworkFunction
from tests.integration.test_prepared_view_read import _create_nf


def test_a_flush_on_a_lost_session_raises_the_transient_error(pg_url, tmp_path):
    from tests.conftest import migrated_sessionmaker
    with migrated_sessionmaker(pg_url) as maker:
        nf_id = _create_nf(maker, tmp_path)
        session = maker()
        try:
            nf = session.get(NetworkFunction, nf_id)
            session.execute(text("UPDATE network_functions SET description = 'x' WHERE id = :i"),
                            {"i": nf_id})  # the transaction has written (nfp.db.engine.wrote)
            backend = session.execute(text("SELECT pg_backend_pid()")).scalar()
            with maker.kw["bind"].connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
                admin.commit()
            nf.status_description = "changed"  # pending: the next statement flushes it
            with pytest.raises(sa_exc.SQLAlchemyError) as raised:
                session.execute(text("SELECT 1"))
            assert isinstance(raised.value, sa_exc.OperationalError), repr(raised.value)
            assert faults.is_transient_db(raised.value)
            session.rollback()
            assert session.execute(text("SELECT pg_backend_pid()")).scalar() != backend
        finally:
            session.close()
