"""AckTracker: multiple-acks for settled runs at the head, single acks behind a pending one."""
from __future__ import annotations

from nfp.rpc.acks import ACK, REJECT, AckTracker


class FakeMessage:
    def __init__(self, tag, log):
        self.delivery_tag = tag
        self.log = log

    def ack(self, multiple=False):
        self.log.append(("ack", self.delivery_tag, multiple))

    def reject(self, requeue=False):
        self.log.append(("reject", self.delivery_tag, requeue))


def _tracked(tracker, count):
    log: list = []
    messages = [FakeMessage(tag, log) for tag in range(1, count + 1)]
    for m in messages:
        tracker.add(m)
    return messages, log


def test_a_settled_head_run_is_acked_with_one_frame():
    tracker = AckTracker(multiple=True)
    messages, log = _tracked(tracker, 5)
    for m in messages[:4]:
        tracker.mark(m, ACK)
    assert tracker.flush() == (4, 0)
    assert log == [("ack", 4, True)] and len(tracker) == 1


def test_nothing_is_acked_past_a_pending_delivery_with_multiple():
    tracker = AckTracker(multiple=True)
    messages, log = _tracked(tracker, 6)
    for i in (0, 1, 3, 4):
        tracker.mark(messages[i], ACK)
    assert tracker.flush() == (4, 0)
    # 1-2 as one multiple-ack; 4 and 5 individually, since 3 is still running
    assert log == [("ack", 2, True), ("ack", 4, False), ("ack", 5, False)]
    tracker.mark(messages[2], ACK)
    tracker.mark(messages[5], ACK)
    assert tracker.flush() == (2, 0)
    assert log[3:] == [("ack", 6, True)] and len(tracker) == 0


def test_rejects_split_runs_and_are_never_covered_by_an_ack():
    tracker = AckTracker(multiple=True)
    messages, log = _tracked(tracker, 4)
    tracker.mark(messages[0], ACK)
    tracker.mark(messages[1], REJECT)
    tracker.mark(messages[2], ACK)
    tracker.mark(messages[3], ACK)
    assert tracker.flush() == (3, 1)
    assert log == [("ack", 1, True), ("reject", 2, False), ("ack", 4, True)]


def test_without_multiple_every_delivery_is_settled_alone():
    tracker = AckTracker(multiple=False)
    messages, log = _tracked(tracker, 3)
    for m in messages:
        tracker.mark(m, ACK)
    assert tracker.flush() == (3, 0)
    assert log == [("ack", 1, False), ("ack", 2, False), ("ack", 3, False)]


def test_unknown_messages_are_ignored():
    tracker = AckTracker(multiple=True)
    tracker.mark(FakeMessage(99, []), ACK)
    assert tracker.flush() == (0, 0)
