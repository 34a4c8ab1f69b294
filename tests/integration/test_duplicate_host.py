"""Two machines configured with one ``rpc.host``, on one PostgreSQL and RabbitMQ.

Both daemons run on this box; ``NFP_MACHINE_ID`` makes the second one another
machine. A second machine started while the first one's workers beat is refused
(after one retry when the first's heartbeats are ``lease_ttl`` old, and still
fresh): it exits with code 3 (configuration error: systemd does not restart it)
naming the host, and the first runs on. A replacement machine started right
after the first was killed waits for that retry and takes the host over. A machine paused past its leases whose members
another machine took over meanwhile halts the same way when it resumes, and
leaves that machine's leases alone.
"""
from __future__ import annotations

import os
import signal
import subprocess
import uuid

import pytest

from nfp.testing.harness import Harness
from tests.integration.test_daemon_behaviour import nf_body
from tests.integration.test_engine_hosts import _status, _tree, _wait

pytestmark = pytest.mark.integration

HOST = "dup-host"


def _machine(tmp_path, name, url, rabbit_url, topic, ttl=15, env=None, **orchestrator):
    return Harness(tmp_path / name, database_url=url, transport_url=rabbit_url, workers=2,
                   topic=topic, env=env,
                   config={"rpc": {"host": HOST},
                           "orchestrator": {"threads_per_worker": 4, "lease_ttl": ttl,
                                            **orchestrator},
                           "config_drivers": {"memory": {"delay": 0.02}}})


def _host_status(h) -> dict:
    return _status(h)["hosts"].get(HOST, {"machines": [], "leases": 0, "workers": []})


def test_a_second_machine_with_a_live_hosts_name_is_refused_and_the_first_runs_on(
        tmp_path, pg_url, rabbit_url):
    topic = f"nfp-dup-{uuid.uuid4().hex[:8]}"
    with _machine(tmp_path, "a", pg_url, rabbit_url, topic) as a:
        _wait(lambda: _host_status(a)["leases"] == 64, "the first machine to hold every bucket")
        first = _host_status(a)["machines"]
        assert len(first) == 1 and first[0] and first[0] != "machine-b", first

        b = _machine(tmp_path, "b", pg_url, rabbit_url, topic, env={"NFP_MACHINE_ID": "machine-b"})
        proc = b.spawn()
        try:
            code = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            b.stop()
            raise AssertionError("the second machine did not halt:\n" + b.logs()[-3000:])
        logs = b.logs()
        assert code == 3, logs[-3000:]
        assert f"rpc.host '{HOST}' is in use by another machine" in logs, logs[-3000:]
        assert f"held by machine {first[0]}" in logs and "unique rpc.host" in logs
        # the daemon says why it halts, not just "a worker exited with code 3"
        assert f"boot failed: worker 0: rpc.host '{HOST}' is in use" in logs \
            or f"boot failed: worker 1: rpc.host '{HOST}' is in use" in logs, logs[-3000:]

        # the first machine runs on, with its members and every lease
        assert a.proc.poll() is None
        shown = _host_status(a)
        assert shown["machines"] == first and shown["leases"] == 64
        assert {w["machine"] for w in shown["workers"]} == set(first)
        nf = a.client.create_network_function(nf_body("after-the-duplicate"))
        a.wait_for_status(nf["id"], timeout=120)
        assert "no longer this machine's" not in a.logs()


def test_a_machine_paused_past_its_leases_and_taken_over_halts_when_it_resumes(
        tmp_path, pg_url, rabbit_url):
    topic = f"nfp-dup-{uuid.uuid4().hex[:8]}"
    ttl = 6
    # the resumed listener must not replace its workers for their missed heartbeats
    # first: their own lease renewal is what must find the members taken over
    with _machine(tmp_path, "a", pg_url, rabbit_url, topic, ttl=ttl,
                  worker_heartbeat_timeout=600) as a:
        _wait(lambda: _host_status(a)["leases"] == 64, "the first machine to hold every bucket")
        paused = _tree(a.proc.pid)
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        b = _machine(tmp_path, "b", pg_url, rabbit_url, topic, ttl=ttl,
                     env={"NFP_MACHINE_ID": "machine-b"})
        try:
            try:
                _wait(lambda: all(w["heartbeat_age"] > ttl for w in _host_status(a)["workers"]),
                      "the paused machine's heartbeats to go stale")
                b.start(timeout=120)  # only b answers: a is stopped
                _wait(lambda: _host_status(b)["machines"] == ["machine-b"]
                      and _host_status(b)["leases"] == 64,
                      "the second machine to take the members over")
            finally:
                for pid in paused:
                    os.kill(pid, signal.SIGCONT)
            try:
                code = a.proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                raise AssertionError("the resumed machine did not halt:\n" + a.logs()[-3000:])
            logs = a.logs()
            assert code == 3, logs[-3000:]
            assert "machine machine-b" in logs and "unique rpc.host" in logs, logs[-3000:]
            halt = [line for line in logs.splitlines() if "nfp.service: halting: worker" in line]
            assert halt and "machine machine-b" in halt[0] and "took it over" in halt[0], \
                logs[-3000:]
            # its exit left b's members and leases alone; b serves
            shown = _host_status(b)
            assert shown["machines"] == ["machine-b"] and shown["leases"] == 64
            nf = b.client.create_network_function(nf_body("after-the-take-over"))
            b.wait_for_status(nf["id"], timeout=120)
        finally:
            b.stop()
            if b.client is not None:
                b.client.close()


def test_a_replacement_started_right_after_the_machine_died_takes_it_over(
        tmp_path, pg_url, rabbit_url):
    topic = f"nfp-dup-{uuid.uuid4().hex[:8]}"
    # b must boot while a's heartbeats are younger than this; on a slow machine
    # its boot took longer than 6 s, and b then simply took the free members over
    ttl = 20
    a = _machine(tmp_path, "a", pg_url, rabbit_url, topic, ttl=ttl)
    a.start(timeout=120)
    try:
        _wait(lambda: _host_status(a)["leases"] == 64, "the first machine to hold every bucket")
        nf = a.client.create_network_function(nf_body("before-the-death"))
        a.wait_for_status(nf["id"], timeout=120)
    finally:
        for pid in _tree(a.proc.pid):  # the whole machine dies at once
            os.kill(pid, signal.SIGKILL)
        a.proc.wait(30)
        if a.client is not None:
            a.client.close()
    b = _machine(tmp_path, "b", pg_url, rabbit_url, topic, ttl=ttl,
                 env={"NFP_MACHINE_ID": "machine-b"})
    b.start(timeout=120)  # at once: a's heartbeats are still younger than lease_ttl
    try:
        _wait(lambda: _host_status(b)["machines"] == ["machine-b"]
              and _host_status(b)["leases"] == 64, "the replacement to take the members over")
        assert b.proc.poll() is None
        logs = b.logs()
        assert "retrying once in" in logs and "taking it over from machine" in logs, logs[-3000:]
        nf = b.client.create_network_function(nf_body("after-the-replacement"))
        b.wait_for_status(nf["id"], timeout=120)
        assert b.client.get_network_function(nf["id"])["status"] == "ACTIVE"
    finally:
        b.stop()
        if b.client is not None:
            b.client.close()
