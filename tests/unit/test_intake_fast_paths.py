"""The fast paths of durable intake and the hot read (profiled in bench/bench_rpc.py)
store, seal and answer exactly what the slow paths did."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import select

from nfp import config as nfp_config
from nfp import faults
from nfp import payload_secrets as ps
from nfp.api import views
from nfp.api.endpoints import OrchestratorEndpoints
from nfp.db import budget, bulk, migrate
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.models import Event, NetworkFunction
from nfp.db.repositories import network_functions
from nfp.engine import store
from nfp.engine.events import EventSpec
from nfp.rpc.types import IncomingRequest

# -- sealing: the text check never lets a secret through -----------------------------------

SECRET_PAYLOADS = [
    {"management": {"admin_password": "pw"}},
    {"list": [{"auth_token": "tok"}]},
    {"AdminPassword": "pw"},
    {"vpn": {"psk": "k"}},
    {"management": {"secret_fields": ["community"], "community": "c"}},
    {"service_config": json.dumps({"parameters": {"Code": {"type": "string", "hidden": True}}}),
     "config_param_values": {"Code": "hid"}},
    {"service_config": json.dumps({"Parameters": {"Code": {"Type": "String", "NoEcho": "true"}}}),
     "config_param_values": {"Code": "hid"}},
    # a document string that spells its key with an escape
    {"service_config": '{"p\\u0061ssword": "pw"}'},
    {"service_config": "p\\x61ssword: pw\n"},
]


@pytest.mark.parametrize("payload", SECRET_PAYLOADS)
def test_every_payload_the_walk_seals_passes_the_text_check(payload):
    sealer = ps.Sealer("nf/x")
    sealer.seal(payload)
    if sealer.found:  # what the walk seals must never be skipped by the check
        assert ps.may_hold_secrets(payload)
    assert ps.may_hold_secrets(payload)


def test_a_payload_without_markers_is_kept_unwalked():
    payload = {"name": "fw-1", "tenant_id": "t", "service_profile": {"id": "p", "service_type": "firewall",
                                                                    "service_flavor": "service_vendor=memory"}}
    sealer = ps.Sealer("nf/x")
    assert sealer.seal_all(payload) is payload
    assert not ps.may_hold_secrets(payload) and sealer.found == {}


def test_a_reference_in_a_payload_is_still_checked():
    assert ps.may_hold_secrets({"x": "secret:nf/other/abc"})


# -- bulk insert: PostgreSQL's JSON path stores what SQLAlchemy's executemany stores -----

def _nf_row(i: int, now: dt.datetime) -> dict:
    return {"id": str(uuid.uuid4()), "name": f"fw-{i} ünïcode 'quoted'", "description": "d",
            "tenant_id": "t", "service_id": None, "service_chain_id": f"sci-{i}",
            "service_profile_id": "p", "service_config": '{"a": [1, 2]}', "config_policy_id": None,
            "status": "PENDING_CREATE", "status_description": "", "service_type": "firewall",
            "service_vendor": "memory", "device_type": "static",
            "spec": {"ports": [{"id": "p1"}], "nested": {"x": None, "y": [True, 1.5]}},
            "generation": 0, "operation": "create", "created_at": now, "updated_at": now}


def _stored(url: str, rows: list[dict]) -> tuple[list[dict], list]:
    engine = make_engine(url)
    try:
        migrate.upgrade(url)
        with make_sessionmaker(engine).begin() as session:
            bulk.insert_rows(session, NetworkFunction.__table__, rows)
            refs = store.add(session, [EventSpec("nf.create", scope=r["id"], payload={"n": i})
                                       for i, r in enumerate(rows)])
        with engine.connect() as conn:
            nfs = [dict(r._mapping) for r in conn.execute(
                select(NetworkFunction.__table__).order_by(NetworkFunction.__table__.c.name))]
            events = [dict(r._mapping) for r in conn.execute(select(Event.__table__).order_by(Event.id))]
        return nfs, [(ref.type, ref.key) for ref in refs] + [
            (e["scope"], e["payload"], e["attempts"], e["status"]) for e in events]
    finally:
        engine.dispose()


def test_bulk_insert_stores_the_same_rows_on_postgresql_and_sqlite(pg_url, tmp_path):
    now = dt.datetime(2026, 12, 2, 15, 0, 0, 123456)
    rows = [_nf_row(i, now) for i in range(5)]
    pg_nfs, pg_events = _stored(pg_url, rows)
    lite_nfs, lite_events = _stored(f"sqlite:///{tmp_path}/nfp.db", rows)
    assert pg_nfs == lite_nfs
    assert pg_events == lite_events
    assert pg_nfs[0]["created_at"] == now and pg_nfs[0]["spec"]["nested"] == {"x": None, "y": [True, 1.5]}
    # defaults the rows left out were filled in as SQLAlchemy fills them
    assert all(nf["degraded"] is False for nf in pg_nfs)


def test_bulk_insert_refuses_a_nul_byte_as_a_data_error(pg_url):
    engine = make_engine(pg_url)
    try:
        migrate.upgrade(pg_url)
        row = _nf_row(0, dt.datetime(2026, 12, 2))
        row["name"] = "bad\x00name"
        with pytest.raises(Exception) as caught:
            with make_sessionmaker(engine).begin() as session:
                bulk.insert_rows(session, NetworkFunction.__table__, [row])
        assert faults.is_data_error(caught.value)
        with engine.connect() as conn:
            assert conn.execute(select(NetworkFunction.__table__)).first() is None
    finally:
        engine.dispose()


def test_bulk_insert_names_an_unknown_column():
    with pytest.raises(KeyError, match="no_such"):
        bulk._columns(NetworkFunction.__table__, [{"id": "x", "no_such": 1}])


# -- the hot read and its pool ------------------------------------------------------------

def test_the_hot_read_answers_what_the_orm_row_shows(pg_url, tmp_path):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path), "database": {"url": pg_url}}, environ={})
    migrate.upgrade(pg_url)
    engine, reads = make_engine(pg_url), make_engine(pg_url, 1, autocommit=True)
    try:
        sessions = make_sessionmaker(engine)
        endpoints = OrchestratorEndpoints(conf, sessions, lambda refs: None, read_engine=reads)
        context = {"user": "u", "tenant": "t", "is_admin": False, "roles": ["member"]}
        created = endpoints.handle_mutations([IncomingRequest(
            method="create_network_function", context=context, msg_id="m1", reply_q="q",
            args={"network_function": {"name": "fw", "tenant_id": "t", "service_profile": {
                "id": "p", "service_type": "firewall", "service_flavor": "service_vendor=memory"}}})])
        nf_id = created[0].result["id"]
        answer = endpoints.handle_read(IncomingRequest(method="get_network_function", context=context,
                                                       args={"network_function_id": nf_id}))
        with sessions() as session:
            assert answer.result == views.nf_dict(network_functions.get(session, nf_id))
        assert answer.result == created[0].result
    finally:
        engine.dispose()
        reads.dispose()


@pytest.mark.parametrize("settings", [{}, {"database": {"host_connections": 18}},
                                      {"rpc": {"read_threads": 8}}])
def test_the_read_pool_is_carved_out_of_the_listeners_share(tmp_path, settings):
    conf = nfp_config.load(None, {"state_dir": str(tmp_path), **settings}, environ={})
    reads = budget.listener_read_pool(conf)
    assert 1 <= reads <= max(1, budget.listener_pool(conf) // 2)
    assert budget.listener_pool(conf) - reads >= 1
