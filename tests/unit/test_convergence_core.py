"""The convergence core on its own: diffs, the plan/commit/verify cycle, rule tracking.

The device here is a dict behind a DeviceSession: the far edge, standing in for
an appliance, so the cycle's rules can be proved without one."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from nfp.db import all_models
from nfp.db.engine import make_engine, make_sessionmaker
from nfp.db.rules import PushedRule, RuleState
from nfp.drivers.config.core import (Candidate, DesiredItem, DeviceSession, Diff, Mode, RuleTracker,
                                     TrackedRule, Unsupported, VerifyError, compare, compare_items,
                                     converge)


class DictDevice(DeviceSession):
    """A device holding named bodies; ``lossy`` names are accepted but never stored."""

    def __init__(self, store: dict, lossy=(), rollback=False):
        self.store, self.lossy, self.supports_rollback = store, set(lossy), rollback
        self.commits, self.opened, self.closed, self.rolled_back = 0, 0, 0, False
        self._before = None

    def open(self):
        self.opened += 1

    def close(self):
        self.closed += 1

    def load_candidate(self, candidate):
        self.candidate = candidate

    def compare(self):
        return compare_items(self.candidate.resource, self.candidate.desired(), dict(self.store),
                             remove_extra=self.candidate.mode != Mode.MERGE)

    def commit(self, diff, confirm_timeout=None):
        self.commits += 1
        self._before = dict(self.store)
        for change in diff.to_remove:
            self.store.pop(change.name, None)
        for change in diff.to_add + diff.to_change:
            if change.name not in self.lossy:
                self.store[change.name] = change.desired
        return {name: f"id-{name}" for name in self.candidate.desired()}

    def rollback(self):
        self.store.clear()
        self.store.update(self._before)
        self.rolled_back = True


def _candidate(mode=Mode.REPLACE, **bodies):
    return Candidate("firewall", mode, [DesiredItem(n, b) for n, b in bodies.items()])


def test_compare_items_sorts_into_add_change_remove_and_sees_order():
    diff = compare_items("firewall", {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}},
                         {"c": {"x": 3}, "b": {"x": 9}, "z": {"x": 0}}, order=["c", "b", "z"])
    assert [c.name for c in diff.to_add] == ["a"]
    assert [c.name for c in diff.to_change] == ["b", "c"]    # b differs, c is out of place
    assert [c.name for c in diff.to_remove] == ["z"]
    assert diff.find("c").reason.startswith("at position 0")


def test_a_diff_is_json():
    diff = compare_items("routes", {"r": {"nexthop": "198.18.0.1", "ports": (1, 2)}}, {})
    data = json.loads(json.dumps(diff.to_dict()))
    assert data == {"resource": "routes", "to_change": [], "to_remove": [], "to_add": [
        {"name": "r", "reason": "missing on device", "desired": {"nexthop": "198.18.0.1", "ports": [1, 2]},
         "actual": None, "external_id": None}]}
    assert Diff("heat", compared=False, note="opaque").to_dict()["compared"] is False


def test_converge_commits_the_plan_and_verifies_it():
    device = DictDevice({"old": {"x": 0}})
    outcome = converge(device, _candidate(a={"x": 1}))
    assert outcome.committed and outcome.external_ids == {"a": "id-a"}
    assert device.store == {"a": {"x": 1}} and (device.opened, device.closed) == (1, 1)


def test_an_unchanged_element_is_not_committed():
    device = DictDevice({"a": {"x": 1}})
    outcome = converge(device, _candidate(a={"x": 1}))
    assert not outcome.committed and device.commits == 0 and outcome.diff.empty


def test_merge_leaves_other_items_and_remove_takes_them_away():
    device = DictDevice({"mine": {"x": 0}, "other": {"x": 5}})
    converge(device, _candidate(Mode.MERGE, mine={"x": 1}))
    assert device.store == {"mine": {"x": 1}, "other": {"x": 5}}
    converge(device, _candidate(Mode.REMOVE, mine={"x": 1}))
    assert device.store == {}


def test_an_item_that_does_not_read_back_is_a_failure_not_a_success():
    device = DictDevice({}, lossy={"b"})
    with pytest.raises(VerifyError) as info:
        converge(device, _candidate(a={"x": 1}, b={"x": 2}))
    assert info.value.names == ["b"] and "does not show b" in str(info.value)
    assert device.closed == 1


def test_a_failed_verify_rolls_back_where_the_device_can():
    device = DictDevice({"keep": {"x": 0}}, lossy={"b"}, rollback=True)
    with pytest.raises(VerifyError, match="rolled back"):
        converge(device, _candidate(b={"x": 2}))
    assert device.rolled_back and device.store == {"keep": {"x": 0}}


def test_compare_changes_nothing_and_confirm_needs_support():
    device = DictDevice({"a": {"x": 0}})
    diff = compare(device, _candidate(a={"x": 1}, b={"x": 2}))
    assert [c.name for c in diff.to_change] == ["a"] and [c.name for c in diff.to_add] == ["b"]
    assert device.commits == 0 and device.store == {"a": {"x": 0}} and device.candidate is None
    with pytest.raises(Unsupported):
        device.confirm()


def test_a_commit_that_raises_discards_the_candidate_and_propagates():
    class Broken(DictDevice):
        def commit(self, diff, confirm_timeout=None):
            raise RuntimeError("device went away")
    device = Broken({})
    with pytest.raises(RuntimeError):
        converge(device, _candidate(a={"x": 1}))
    assert device.candidate is None and device.closed == 1


def test_unknown_operation_names_the_field():
    with pytest.raises(Exception, match="^operation: 'patch'"):
        Candidate.for_operation("patch", resource="firewall")


def test_record_set_tracks_exactly_the_owners_rules(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    all_models().create_all(engine)
    tracker = RuleTracker(make_sessionmaker(engine))
    owner = dict(nf_id="nf-1", device_id="dev-1", vendor="linux", service="Firewall", resource="firewall")
    tracker.record_set(**owner, rules=[TrackedRule("a", "t a", "h1", "tag"), TrackedRule("b", "t b", "h2")])
    tracker.record_set(**owner, rules=[TrackedRule("b", "t b", "h3"), TrackedRule("c", "t c", "h4")])
    tracker.record_set(**dict(owner, nf_id="nf-2"), rules=[TrackedRule("a", "u a", "h5")])
    with make_sessionmaker(engine)() as session:
        rows = [(r.nf_id, r.name, r.external_id, r.body_hash, r.status)
                for r in session.scalars(select(PushedRule).order_by(PushedRule.nf_id, PushedRule.name))]
    assert rows == [("nf-1", "b", "t b", "h3", RuleState.APPLIED), ("nf-1", "c", "t c", "h4", RuleState.APPLIED),
                    ("nf-2", "a", "u a", "h5", RuleState.APPLIED)]
    assert tracker.forget("nf-1", "dev-1", "Firewall") == 2
    assert list(tracker.recorded("nf-2", "dev-1", "Firewall")) == ["a"]
    engine.dispose()
