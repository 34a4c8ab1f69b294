"""Rule tracking in bulk: one element's rules are reserved in one transaction and
their device ids recorded in batches, with the same guarantees as one by one:
every pushed rule ends up recorded (or adoptable by its tag), nothing is pushed
twice, and rules never attempted leave no rows."""
from __future__ import annotations

import pytest
from sqlalchemy import event, select

from nfp.config import NfpConfig
from nfp.db import all_models
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.rules import PushedRule, RuleState
from nfp.drivers.config.base import ConfigRequest, ConfigStatus
from nfp.drivers.config.dictionary import sync
from nfp.drivers.config.dictionary.driver import DictionaryConfigDriver
from nfp.drivers.config.dictionary.tracking import RuleTracker
from nfp.secrets import SecretStore, load_key
from nfp.testing.simulators.pfsense import PfSenseSimulator
from nfp.testing.simulators.wiring import device_target

API_KEY = "track-KEY-3a8e61f2"
COUNT = 30


def _rules(count: int = COUNT, bad_at: int = -1) -> dict:
    rules = [{"name": f"r{i}", "protocol": "tcp", "source_ip_address": "198.18.0.0/24",
              "destination_port": 1000 + i} for i in range(count)]
    if bad_at >= 0:  # pfSense refuses ports without tcp/udp: the device fails this one
        rules[bad_at] = {"name": f"r{bad_at}", "protocol": "any", "destination_port": 80}
    return {"rules": rules}


@pytest.fixture
def sim():
    with PfSenseSimulator(api_key=API_KEY) as simulator:
        yield simulator


@pytest.fixture
def env(tmp_path):
    conf = NfpConfig(state_dir=str(tmp_path))
    engine = make_engine(conf.database_url)
    all_models().create_all(engine)
    SecretStore(make_sessionmaker(engine), load_key(conf)).put("dev-1-credentials", {"api_key": API_KEY})
    driver = DictionaryConfigDriver(conf, {"retries": 0, "timeout": 5})
    yield driver, engine
    driver.close()


def _apply(driver, sim, data, operation="create"):
    return driver.apply(ConfigRequest(operation, "firewall", "firewall", data, device_target(sim), nf_id="nf-1"))


def _rows(engine) -> list[PushedRule]:
    with make_sessionmaker(engine)() as session:
        return list(session.scalars(select(PushedRule).order_by(PushedRule.name)))


def test_many_rules_are_tracked_in_a_few_transactions(env, sim):
    driver, engine = env
    commits = []
    event.listen(driver.sessions.kw["bind"], "commit", lambda conn: commits.append(1))
    result = _apply(driver, sim, _rules())
    assert result.ok, result.error
    rows = _rows(engine)
    trackers = {str(r["tracker"]) for r in sim.table("firewall/rule")}
    assert len(rows) == COUNT and all(r.status == RuleState.APPLIED for r in rows)
    assert {r.external_id for r in rows} == trackers == set(result.external_ids.values())
    assert 2 <= len(commits) < 8, f"{len(commits)} transactions for {COUNT} rules"


def test_a_failure_midway_records_what_was_pushed_and_drops_the_rest(env, sim):
    driver, engine = env
    result = _apply(driver, sim, _rules(bad_at=10))
    assert result.status == ConfigStatus.FAILURE and "FIREWALL_RULE_PORTS_WITHOUT_TCP_UDP" in result.error
    rows = {r.name: r for r in _rows(engine)}
    on_device = [r["tracker"] for r in sim.table("firewall/rule")]
    assert len(on_device) == 10
    assert sorted(rows) == sorted([f"r{i}" for i in range(11)])          # r11.. were never attempted
    assert [rows[f"r{i}"].external_id for i in range(10)] == [str(t) for t in on_device]
    assert rows["r10"].status == RuleState.PENDING and rows["r10"].external_id is None
    # the fixed element converges without pushing anything twice
    assert _apply(driver, sim, _rules()).ok
    assert len(sim.table("firewall/rule")) == COUNT and len(_rows(engine)) == COUNT


def test_rules_pushed_but_not_recorded_are_adopted_not_pushed_again(env, sim, monkeypatch):
    driver, engine = env

    def lost(self, results):  # the process dies before the device's ids are written
        raise RuntimeError("worker killed")
    monkeypatch.setattr(RuleTracker, "applied_many", lost)
    with pytest.raises(RuntimeError):
        _apply(driver, sim, _rules(5))
    assert all(r.status == RuleState.PENDING for r in _rows(engine)) and len(_rows(engine)) == 5
    monkeypatch.undo()
    assert _apply(driver, sim, _rules(5)).ok
    assert len(sim.table("firewall/rule")) == 5
    rows = _rows(engine)
    assert all(r.status == RuleState.APPLIED for r in rows)
    assert {r.external_id for r in rows} == {str(r["tracker"]) for r in sim.table("firewall/rule")}


def test_batches_are_flushed_as_the_push_goes(env, sim, monkeypatch):
    driver, engine = env
    monkeypatch.setattr(sync, "APPLIED_BATCH", 4)
    batches = []
    original = RuleTracker.applied_many
    monkeypatch.setattr(RuleTracker, "applied_many",
                        lambda self, results: (batches.append(len(results)), original(self, results))[1])
    assert _apply(driver, sim, _rules(10)).ok
    assert batches[:2] == [4, 4] and sum(batches) == 10
