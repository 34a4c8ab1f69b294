"""The hot read (``get_network_function``) runs a server-side prepared statement on
PostgreSQL: it answers exactly what the Core statement answers, and a lost
database session costs one failed read, not a pool of dead connections. The
listener answers it on its consumer thread (``serves_inline``) on a connection
the endpoints hold: a database error gives that connection up and sends the
reads to the read threads for a while."""
from __future__ import annotations

import socket

import pytest
from sqlalchemy import exc as sa_exc, make_url, text

from nfp import config as nfp_config
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.db.engine import make_engine
from nfp.db.repositories import _VIEW_ROW, network_functions
from nfp.rpc import codec

CONTEXT = {"tenant": "t-1", "project_id": "t-1", "is_admin": True, "roles": ["admin"]}


def _create_nf(sessionmaker, tmp_path) -> str:
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    endpoints = OrchestratorEndpoints(conf, sessionmaker, lambda refs: None)
    request = codec.decode_request(codec.encode_request("create_network_function", {"network_function": {
        "name": "fw-1", "tenant_id": "t-1", "description": "d\u00e9j\u00e0 vu",
        "service_profile": {"id": "p", "service_type": "firewall",
                            "service_flavor": "service_vendor=memory,device_type=static"},
        "service_chain_instance": {"id": "sci-1"}, "service_chain_node": {"id": "scn-1"}}}, CONTEXT))
    request.unique_id = "u-1"
    [outcome] = endpoints.handle_mutations([request])
    assert outcome.error is None, outcome.error
    return outcome.result["id"]


def test_the_prepared_read_answers_what_core_answers(db_maker, tmp_path):
    nf_id = _create_nf(db_maker, tmp_path)
    engine = db_maker.kw["bind"]
    with engine.connect() as conn:
        expected = conn.execute(_VIEW_ROW, {"nf_id": nf_id}).first()
        for _ in range(3):  # prepared on the first read, executed on the others
            got = network_functions.row(conn, nf_id)
            assert tuple(got) == tuple(expected)
            assert got.status == expected.status and got.created_at == expected.created_at
        assert network_functions.row(conn, "no-such-nf") is None


def test_autocommit_connections_and_rolled_back_transactions_keep_the_statement(pg_url, tmp_path):
    from tests.conftest import migrated_sessionmaker
    with migrated_sessionmaker(pg_url) as maker:
        nf_id = _create_nf(maker, tmp_path)
        reads = make_engine(pg_url, pool_size=1, autocommit=True)
        try:
            for _ in range(3):
                with reads.connect() as conn:
                    assert network_functions.row(conn, nf_id).id == nf_id
            with maker.kw["bind"].connect() as conn:  # inside a transaction that rolls back
                assert network_functions.row(conn, nf_id).id == nf_id
                conn.rollback()
                assert network_functions.row(conn, nf_id).id == nf_id
        finally:
            reads.dispose()


def test_a_lost_session_fails_one_read_and_the_next_prepares_again(pg_url, tmp_path):
    from tests.conftest import migrated_sessionmaker
    with migrated_sessionmaker(pg_url) as maker:
        nf_id = _create_nf(maker, tmp_path)
        reads = make_engine(pg_url, pool_size=1, autocommit=True)
        try:
            with reads.connect() as conn:
                assert network_functions.row(conn, nf_id).id == nf_id
                backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with maker.kw["bind"].connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
                admin.commit()
            with reads.connect() as conn:  # the pool's one connection is the dead one
                with pytest.raises(sa_exc.OperationalError) as failed:
                    network_functions.row(conn, nf_id)
                assert failed.value.connection_invalidated and "nf_id" not in str(failed.value)
                assert conn.invalidated  # so the same Connection reconnects on its next use
                assert network_functions.row(conn, nf_id).id == nf_id
            for _ in range(2):  # invalidated: a new session, prepared again
                with reads.connect() as conn:
                    assert network_functions.row(conn, nf_id).id == nf_id
                    assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != backend
        finally:
            reads.dispose()


def _get(nf_id: str, context=CONTEXT):
    return codec.decode_request(codec.encode_request(
        "get_network_function", {"network_function_id": nf_id}, context))


def test_inline_reads_answer_what_the_read_threads_answer(db_maker, tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    nf_id = _create_nf(db_maker, tmp_path)
    engine = db_maker.kw["bind"]
    postgres = engine.dialect.name == "postgresql"
    reads = make_engine(str(engine.url.render_as_string(hide_password=False)), 1, autocommit=True) \
        if postgres else engine
    endpoints = OrchestratorEndpoints(conf, db_maker, lambda refs: None, read_engine=reads)
    try:
        # SQLite reads can wait on the write lock: never on the consumer thread
        assert endpoints.serves_inline("t", "get_network_function") is postgres
        assert not endpoints.serves_inline("t", "get_network_functions")
        pooled = endpoints.handle_read(_get(nf_id))
        assert pooled.error is None and pooled.result["id"] == nf_id
        for _ in range(2):
            inline = endpoints.handle_inline_read(_get(nf_id))
            assert inline.error is None and inline.result == pooled.result
        other = {"tenant": "t-2", "project_id": "t-2", "is_admin": False, "roles": ["member"]}
        assert endpoints.handle_inline_read(_get(nf_id, other)).result is None  # another tenant's
        assert endpoints.handle_inline_read(_get("missing")).result is None
        bad = endpoints.handle_inline_read(_get("x" * 40))
        assert isinstance(bad.error, Exception) and "network_function_id" in str(bad.error)
    finally:
        endpoints.close()
        if postgres:
            reads.dispose()


def test_a_stale_held_connection_is_replaced_within_the_read(pg_url, tmp_path):
    """The database restarted (here: the session was terminated) since the last
    read: the read reconnects once and answers; the caller sees no error."""
    from tests.conftest import migrated_sessionmaker
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    with migrated_sessionmaker(pg_url) as maker:
        nf_id = _create_nf(maker, tmp_path)
        reads = make_engine(pg_url, pool_size=2, autocommit=True)
        endpoints = OrchestratorEndpoints(conf, maker, lambda refs: None, read_engine=reads)
        try:
            assert endpoints.handle_inline_read(_get(nf_id)).result["id"] == nf_id
            backend = endpoints._held.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with maker.kw["bind"].connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
                admin.commit()
            assert endpoints.handle_inline_read(_get(nf_id)).result["id"] == nf_id
            assert endpoints._held.exec_driver_sql("SELECT pg_backend_pid()").scalar() != backend
            assert endpoints.serves_inline("t", "get_network_function")  # no pause: it answered
        finally:
            endpoints.close()
            reads.dispose()


def test_an_unreachable_database_sends_inline_reads_to_the_read_threads(pg_url, tmp_path):
    from tests.conftest import migrated_sessionmaker
    from nfp.api import endpoints as endpoints_module
    conf = nfp_config.load(None, {"state_dir": str(tmp_path)}, environ={})
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()  # nothing listens there: connecting is refused
    with migrated_sessionmaker(pg_url) as maker:
        nf_id = _create_nf(maker, tmp_path)
        unreachable = make_url(pg_url).set(host="127.0.0.1", port=closed_port)
        gone = make_engine(unreachable.render_as_string(hide_password=False), pool_size=1,
                           autocommit=True)
        endpoints = OrchestratorEndpoints(conf, maker, lambda refs: None, read_engine=gone)
        try:
            assert endpoints.serves_inline("t", "get_network_function")
            with pytest.raises(sa_exc.OperationalError):
                endpoints.handle_inline_read(_get(nf_id))
            assert endpoints._held is None
            assert not endpoints.serves_inline("t", "get_network_function")  # the read threads answer
            endpoints._inline_after -= endpoints_module.INLINE_PAUSE  # the pause is over
            assert endpoints.serves_inline("t", "get_network_function")
        finally:
            endpoints.close()
            gone.dispose()


def test_the_read_engine_bounds_its_statements(pg_url, monkeypatch):
    from nfp.db import engine as engine_module
    monkeypatch.setattr(engine_module, "READ_STATEMENT_TIMEOUT_MS", 300)
    reads, writes = make_engine(pg_url, pool_size=1, autocommit=True), make_engine(pg_url, pool_size=1)
    try:
        with reads.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "300ms"
            with pytest.raises(sa_exc.OperationalError, match="statement timeout"):
                conn.exec_driver_sql("SELECT pg_sleep(2)")
        with writes.connect() as conn:  # steps and intake are not cut short
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
    finally:
        reads.dispose()
        writes.dispose()
