"""The orchestrator's asynchronous configuration steps (``rest``/``proxy`` clients) on the
in-process engine, against the real configurator app (its in-process harness): the
step sends, parks, and the matching ``network_function_notification`` resumes it;
a repeated notification changes nothing; a notification that arrives before the
step has even returned still resumes it; a failure or a refusal puts the NF in
ERROR with the configurator's message."""
from __future__ import annotations

import pytest

from nfp.db.models import NetworkFunction
from nfp.testing.configurator import ConfiguratorHarness
from nfp.testing.memory_config import read_device
from nfp.proxy.http import decode
from nfp.workers.configurator.remote import RemoteConfiguratorClient
from tests.unit.test_lifecycle_flows import FakeCloud, _create, _get, _orchestrator, _req


class HarnessClient(RemoteConfiguratorClient):
    """A remote client whose transport is the configurator harness's HTTP client.
    ``eager``: the configurator applies at once and its notification is delivered
    before ``send`` returns (a proxy faster than the step's own commit)."""

    def __init__(self, conf, harness, deliver=None):
        super().__init__(conf)
        self.harness, self.deliver = harness, deliver
        self.sent: list[str] = []

    def send(self, method, body, request_id):
        self.sent.append(request_id)
        response = self.harness.post(method, body, request_id=request_id)
        decode(response.status_code, response.content)  # Refused on a 4xx, as over HTTPS
        if self.deliver is not None:
            self.harness.engine.join()
            self.deliver()


@pytest.fixture
def env(tmp_path):
    harness = ConfiguratorHarness(tmp_path / "cfg", allowed_target_cidrs=["192.0.2.0/24"])
    engines = []

    def build(eager=False, **memory):
        """``(engine, endpoints, client)``: an orchestrator whose configurator is the
        harness; ``memory`` sets the configurator's memory driver options."""
        if memory:
            harness.engine.services.client.conf.config_drivers.setdefault("memory", {}).update(memory)
        box = {}
        client = HarnessClient(None, harness, (lambda: deliver(harness, box["endpoints"])) if eager else None)
        conf, engine, box["endpoints"] = _orchestrator(tmp_path / "orch", FakeCloud(None), client)
        engines.append(engine)
        return engine, box["endpoints"], client

    yield harness, build
    for engine in engines:
        engine.close()
    harness.close()


def deliver(harness, endpoints) -> int:
    """One notifier pass done by hand: every kept notification cast to the endpoints."""
    notes = harness.client.get("/v1/nfp/get_notifications?keep=true", headers=harness.headers()).json()
    for note in notes:
        [reply] = endpoints.handle_mutations([_req("network_function_notification", None,
                                                   notification_data=note)])
        assert reply.error is None, reply.error
    return len(notes)


def test_step_parks_and_the_notification_resumes_it_once(env):
    harness, build = env
    engine, endpoints, client = build()
    nf_id = _create(endpoints)
    engine.join()
    assert _get(engine, NetworkFunction, nf_id).status == "PENDING_CREATE"  # parked, not ACTIVE
    assert len(client.sent) == 1
    harness.engine.join()
    assert deliver(harness, endpoints) == 1
    engine.join()
    assert _get(engine, NetworkFunction, nf_id).status == "ACTIVE"
    assert deliver(harness, endpoints) == 1  # not acknowledged: the same one again
    engine.join()
    assert [t for t, _ in engine.notifications].count("nfp.network_function.create.end") == 1
    device = read_device(harness.conf.state_path, "vm-1")
    assert device[nf_id]["firewall"]["rules"][0]["name"] == "web"


def test_a_notification_before_the_step_returns_still_resumes_it(env):
    harness, build = env
    engine, endpoints, client = build(eager=True)
    nf_id = _create(endpoints)
    engine.join()
    assert _get(engine, NetworkFunction, nf_id).status == "ACTIVE"
    assert len(client.sent) == 1


def test_failure_and_refusal_put_the_nf_in_error_with_the_message(env):
    harness, build = env
    engine, endpoints, client = build(fail_resources=["firewall"])
    nf_id = _create(endpoints)
    engine.join()
    harness.engine.join()
    deliver(harness, endpoints)
    engine.join()
    nf = _get(engine, NetworkFunction, nf_id)
    assert nf.status == "ERROR" and "device refused firewall" in nf.status_description
