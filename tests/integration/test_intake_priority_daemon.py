"""Intake priority in the real daemon (PostgreSQL, RabbitMQ): while a backlog
waits on the broker, the workers start no step, however small the batches the
listener hands its group commit are (:mod:`nfp.engine.intake_priority`)."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from nfp.testing.harness import Harness

pytestmark = pytest.mark.integration

CASTS = 600
THRESHOLD = 100
#: a small prefetch window keeps every group commit under THRESHOLD: a backlog
#: guessed from the batch size (as before) never held the workers back here
PREFETCH = 40


def nf_body(i: int) -> dict:
    return {"name": f"fw{i}", "tenant_id": "t1",
            "service_profile": {"service_type": "firewall",
                                "service_flavor": "service_vendor=memory,device_type=static"}}


def test_workers_start_no_step_while_a_backlog_waits_on_the_broker(tmp_path, pg_url, rabbit_url):
    h = Harness(tmp_path, database_url=pg_url, transport_url=rabbit_url, workers=1,
                config={"transport": {"prefetch": PREFETCH},
                        "orchestrator": {"intake_priority_batch": THRESHOLD,
                                         "intake_priority_max": 120}})
    engine = create_engine(pg_url)
    try:
        h.start()  # declares the topic queue, which keeps the casts while no daemon runs
        assert h.stop(timeout=60) == 0
        for i in range(CASTS):
            h.client.cast("create_network_function", network_function=nf_body(i))
        h.start()
        deadline = time.monotonic() + 300
        while True:
            with engine.connect() as conn:
                nfs, first_step = conn.execute(text(
                    "SELECT (SELECT count(*) FROM network_functions), "
                    "(SELECT min(finished_at) FROM events WHERE finished_at IS NOT NULL)")).one()
            if nfs == CASTS and first_step is not None:
                break
            assert time.monotonic() < deadline, f"{nfs} of {CASTS} committed, first step {first_step}"
            time.sleep(0.2)
        with engine.connect() as conn:
            before_first_step = conn.execute(text(
                "SELECT count(*) FROM network_functions WHERE created_at <= :t"),
                {"t": first_step}).scalar_one()
        # the workers waited until fewer than THRESHOLD requests were left on the
        # broker and in flight; one group commit (at most PREFETCH) may straddle that
        assert before_first_step >= CASTS - THRESHOLD - 2 * PREFETCH, \
            f"the first step finished when only {before_first_step} of {CASTS} creates were in"
    finally:
        engine.dispose()
        h.stop(timeout=60)
        if h.client is not None:
            h.client.close()
